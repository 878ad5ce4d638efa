"""Cloud Function train_trigger: a retrain message from Pub/Sub starts the trainer.

`on_retrain_request` is the CloudEvent entry point. The work is done by
`forecastguard.trigger.handle_event`; this module only builds the runtime (database
engine, launcher) once per process, on the first event. The settings are read when the
module loads: a malformed setting stops the function at start-up, naming the variable.

Returning acknowledges a delivery (also a malformed message: it is recorded as rejected
and logged); raising makes Pub/Sub deliver it again (the database failing, the trainer
not starting for now).
"""

from __future__ import annotations

import os
import threading

import functions_framework
from cloudevents.http.event import CloudEvent

from forecastguard.config import Settings
from forecastguard.logs import configure_logging
from forecastguard.trigger import Runtime, handle_event

_lock = threading.Lock()
_runtime: Runtime | None = None
_SETTINGS = Settings.from_env()  # raises ConfigError naming a malformed variable
configure_logging(_SETTINGS.log_level)


def use_runtime(runtime: Runtime | None) -> None:
    """Set the runtime this process uses (tests, local wiring); None rebuilds it from env."""
    global _runtime
    with _lock:
        _runtime = runtime


def _get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime.from_settings(Settings.from_env(), os.environ)
        return _runtime


@functions_framework.cloud_event
def on_retrain_request(event: CloudEvent) -> None:
    """Handle a Pub/Sub retrain message: returning acknowledges it, raising redelivers it."""
    handle_event(_get_runtime(), event["id"], event.get_data())

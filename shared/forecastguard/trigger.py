"""What the train_trigger function does with one Pub/Sub delivery of a retrain message.

Validate the message (a malformed one is recorded as rejected and acknowledged), record
it once under its request id, claim the trainer or queue the request, and start the
trainer through a launcher. A start that fails for now raises, so Pub/Sub redelivers;
one that cannot succeed is recorded as failed and acknowledged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from forecastguard import retrain
from forecastguard.config import Settings
from forecastguard.db.engine import make_engine
from forecastguard.launcher import Launcher, PermanentLaunchError, make_launcher, trainer_env
from forecastguard.logs import get_logger
from forecastguard.messages import MessageError, RetrainMessage

log = get_logger(__name__)


@dataclass(frozen=True)
class Runtime:
    """What handling a delivery needs: the database, a launcher and the run timeout."""

    engine: sa.Engine
    launcher: Launcher
    timeout_s: int

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        jobs_client: Any = None,
        executions_client: Any = None,
    ) -> Runtime:
        """Build from settings; `environ` is what a local trainer subprocess inherits."""
        settings.require_database()
        launcher = make_launcher(
            settings, environ, jobs_client=jobs_client, executions_client=executions_client
        )
        return cls(make_engine(settings), launcher, settings.trainer_timeout_s)


@dataclass(frozen=True)
class Outcome:
    """What became of a delivery: the request's ledger key and status, and whether a
    run was started by it (`started_id` may name a queued request it started)."""

    request_id: str
    status: str
    started_id: str | None = None
    detail: str = ""


def message_id_of(event_id: str | None, data: Any) -> str:
    """The Pub/Sub message id (the CloudEvent id when the envelope lacks it)."""
    message = data.get("message") if isinstance(data, dict) else None
    if isinstance(message, dict):
        for key in ("messageId", "message_id"):
            if isinstance(message.get(key), str) and message[key]:
                return message[key]
    if event_id:
        return str(event_id)
    raw = json.dumps(data, sort_keys=True, default=str).encode("utf-8")
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def message_data_of(data: Any) -> bytes:
    """The decoded `message.data` of a Pub/Sub CloudEvent; `MessageError` if malformed."""
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, too deep, a 5,000-digit number
            raise MessageError("the event data is not a Pub/Sub JSON envelope") from None
    if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
        raise MessageError("the event data has no Pub/Sub 'message' object")
    encoded = data["message"].get("data")
    if not isinstance(encoded, str) or not encoded:
        raise MessageError("the Pub/Sub message has no data")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise MessageError("the Pub/Sub message data is not valid base64") from None


def handle_event(runtime: Runtime, event_id: str | None, data: Any) -> Outcome:
    """Handle one delivery; return normally to acknowledge it, raise to have it redelivered."""
    message_id = message_id_of(event_id, data)
    raw: bytes | None = None
    try:
        raw = message_data_of(data)
        message = RetrainMessage.from_json(raw)
        retrain.check_fits(message)
    except MessageError as exc:
        if raw is not None:
            payload = retrain.payload_text(raw)
        else:
            payload = json.dumps(data, default=str) if not isinstance(data, str) else data
        key = retrain.reject(runtime.engine, message_id=message_id, payload=payload, error=str(exc))
        log.warning(
            "retrain message rejected",
            extra={"message_id": message_id, "error": str(exc), "request_id": key},
        )
        return Outcome(key, "rejected", detail=str(exc))

    fields = {"message_id": message_id, "request_id": message.request_id}
    if not retrain.record(
        runtime.engine, message, message_id=message_id, payload=retrain.payload_text(raw)
    ):
        log.info("retrain request seen before", extra=fields)
    reap_dead(runtime)
    claim = retrain.claim(runtime.engine, message.request_id, timeout_s=runtime.timeout_s)
    assert claim.request is not None
    if claim.decision == "start":
        outcome = _launch(runtime, claim.request)
    elif claim.decision == "queued":
        log.info("retrain request queued", extra={**fields, "blocking": claim.blocking})
        outcome = Outcome(message.request_id, "queued", detail=f"run {claim.blocking} in progress")
    else:
        status = claim.request.status
        log.info("retrain request already handled", extra={**fields, "status": status})
        outcome = Outcome(message.request_id, status, detail="repeated delivery: nothing to do")
    if outcome.started_id is None:
        started = start_next(runtime)
        if started is not None and started.started_id is not None:
            current = retrain.get(runtime.engine, message.request_id)
            status = current.status if current else outcome.status
            return Outcome(message.request_id, status, started.started_id, outcome.detail)
    return outcome


def start_next(runtime: Runtime) -> Outcome | None:
    """Start the queued request when the trainer is free; None when nothing was claimed.

    The function calls this after every delivery that started nothing, and the trainer
    may call it after `retrain.mark_finished` / `mark_failed`.
    """
    reap_dead(runtime)
    claim = retrain.claim_next(runtime.engine, timeout_s=runtime.timeout_s)
    if claim.decision != "start" or claim.request is None:
        return None
    log.info("starting a queued retrain request", extra={"request_id": claim.request.request_id})
    return _launch(runtime, claim.request)


def reap_dead(runtime: Runtime) -> str | None:
    """Ask the launcher whether the run in progress is alive; a dead one is marked failed.

    Returns the request id of the run found dead (None: none, alive, or cannot tell).
    A run still `launching` is being started right now and is not asked about.
    """
    active = retrain.in_progress(runtime.engine, timeout_s=runtime.timeout_s)
    if active is None or active.status != "started":
        return None
    liveness = getattr(runtime.launcher, "liveness", None)
    if liveness is None:
        return None
    state = liveness(active.execution_name)
    if state.alive is not False:
        return None
    marked = retrain.mark_dead(
        runtime.engine, active.request_id, started_at=active.started_at, reason=state.reason
    )
    return active.request_id if marked else None


def _launch(runtime: Runtime, request: retrain.RetrainRequest) -> Outcome:
    rid = request.request_id
    env = trainer_env(
        rid, request.reason, request.health_check_id, request.window_start, request.window_end
    )
    try:
        launched = runtime.launcher.launch(rid, env)
    except PermanentLaunchError as exc:
        error = f"could not start the trainer: {exc}"
        retrain.mark_failed(runtime.engine, rid, error)
        log.error("retrain request failed to start", extra={"request_id": rid, "error": str(exc)})
        return Outcome(rid, "failed", detail=error)
    except Exception as exc:
        # Transient (or unexpected): give the trainer back and let Pub/Sub redeliver.
        retrain.release(runtime.engine, rid, error=f"start failed, will retry: {exc}")
        log.warning(
            "trainer start failed, will retry", extra={"request_id": rid, "error": str(exc)}
        )
        raise
    retrain.mark_started(
        runtime.engine, rid, execution_name=launched.execution_name, log_path=launched.log_path
    )
    log.info(
        "trainer started",
        extra={
            "request_id": rid,
            "execution_name": launched.execution_name,
            "log_path": launched.log_path,
        },
    )
    return Outcome(rid, "started", rid, detail=launched.execution_name or "")

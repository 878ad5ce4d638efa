"""The event-driven functions behind Pub/Sub push subscriptions (terraform/pubsub.tf).

Terraform points a push subscription at each function's URL, with the topic as the path.
Pub/Sub then POSTs the wrapped push body ({"message": {...}, "subscription": ...}), not a
CloudEvent. functions-framework converts that body into the CloudEvent Eventarc used to
deliver, so the @cloud_event entry points need no change. These tests post real push bodies
through functions-framework's own app and test client, to the real entry points.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from functions_framework import create_app

from forecastguard.config import Settings

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "projects/demo-project/topics/retrain-requests"
SUBSCRIPTION = "projects/demo-project/subscriptions/forecastguard-train-trigger-push"


def push_body(payload: dict[str, Any], message_id: str = "1234567890") -> dict[str, Any]:
    """A push request body exactly as Pub/Sub sends it (both id spellings, publish time)."""
    data = base64.b64encode(json.dumps(payload).encode()).decode()
    return {
        "message": {
            "data": data,
            "attributes": {"origin": "test"},
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": "2026-05-31T06:00:00.123Z",
            "publish_time": "2026-05-31T06:00:00.123Z",
        },
        "subscription": SUBSCRIPTION,
        "deliveryAttempt": 1,
    }


def _post(app: Any, body: dict[str, Any], path: str = f"/{TOPIC}") -> Any:
    return app.test_client().post(path, json=body)


def test_a_push_body_becomes_the_cloudevent_eventarc_delivered(tmp_path: Path) -> None:
    source = tmp_path / "main.py"
    source.write_text(
        "import functions_framework\n"
        "seen = []\n"
        "@functions_framework.cloud_event\n"
        "def receive(event):\n"
        "    seen.append(event)\n",
        encoding="utf-8",
    )
    app = create_app("receive", str(source), signature_type="cloudevent")
    module = sys.modules["main"]
    response = _post(app, push_body({"reason": "drift"}, "42"))
    assert response.status_code == 200, response.get_data(as_text=True)
    (event,) = module.seen
    assert event["id"] == "42", "the message id is the event id (train_trigger dedupes on it)"
    assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert event["source"] == f"//pubsub.googleapis.com/{TOPIC}", "the path names the topic"
    message = event.get_data()["message"]
    assert json.loads(base64.b64decode(message["data"])) == {"reason": "drift"}
    assert message["attributes"] == {"origin": "test"}
    assert message["messageId"] == "42"
    assert message["publishTime"] == "2026-05-31T06:00:00.123Z"


def test_a_body_that_is_no_push_is_refused_so_pubsub_retries_then_dead_letters(
    tmp_path: Path,
) -> None:
    source = tmp_path / "main.py"
    source.write_text(
        "import functions_framework\n"
        "@functions_framework.cloud_event\n"
        "def receive(event):\n"
        "    pass\n",
        encoding="utf-8",
    )
    app = create_app("receive", str(source), signature_type="cloudevent")
    response = _post(app, {"unexpected": True})
    assert response.status_code == 400


def test_train_trigger_gets_the_message_id_and_data_from_a_push() -> None:
    app = create_app(
        "on_retrain_request",
        str(ROOT / "functions" / "train_trigger" / "main.py"),
        signature_type="cloudevent",
    )
    module = sys.modules["main"]
    calls: list[tuple[Any, str, Any]] = []
    runtime = object()
    module.use_runtime(runtime)
    original = module.handle_event
    module.handle_event = lambda rt, event_id, data: calls.append((rt, event_id, data))
    try:
        body = push_body({"reason": "health check 7 unhealthy", "health_check_id": 7}, "777")
        response = _post(app, body)
    finally:
        module.handle_event = original
        module.use_runtime(None)
    assert response.status_code == 200, response.get_data(as_text=True)
    ((got_runtime, event_id, data),) = calls
    assert got_runtime is runtime and event_id == "777"
    assert json.loads(base64.b64decode(data["message"]["data"])) == {
        "reason": "health check 7 unhealthy",
        "health_check_id": 7,
    }


def test_a_failing_handler_answers_500_so_pubsub_redelivers() -> None:
    app = create_app(
        "on_retrain_request",
        str(ROOT / "functions" / "train_trigger" / "main.py"),
        signature_type="cloudevent",
    )
    module = sys.modules["main"]
    module.use_runtime(object())
    original = module.handle_event

    def fail(*_args: Any) -> None:
        raise RuntimeError("database unavailable")

    module.handle_event = fail
    try:
        response = _post(app, push_body({"reason": "drift"}))
    finally:
        module.handle_event = original
        module.use_runtime(None)
    assert response.status_code == 500


@pytest.mark.parametrize(
    ("payload", "runs"),
    [({"as_of": "2026-05-30", "window_days": 14}, 1), ({}, 1)],
)
def test_health_pubsub_runs_the_check_a_push_asks_for(payload: dict, runs: int) -> None:
    app = create_app(
        "health_pubsub",
        str(ROOT / "functions" / "health" / "main.py"),
        signature_type="cloudevent",
    )
    module = sys.modules["main"]
    checks: list[tuple[Any, Any, dict[str, Any]]] = []

    class RecordingService:
        settings = Settings.from_env({})

        def run_scheduled(self, as_of: Any, window_days: Any, **kwargs: Any) -> Any:
            checks.append((as_of, window_days, kwargs))
            return SimpleNamespace(outputs={})

    original = module.get_service
    module.get_service = RecordingService
    try:
        response = _post(
            app, push_body(payload), path="/projects/demo-project/topics/health-check-requests"
        )
    finally:
        module.get_service = original
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(checks) == runs
    as_of, window_days, kwargs = checks[0]
    # The push's message id reaches the check (a redelivered message is recognised).
    assert kwargs == {"event_id": "1234567890"}
    if payload:
        assert str(as_of) == "2026-05-30" and window_days == 14
    else:
        assert window_days is None

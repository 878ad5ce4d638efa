"""health_pubsub with real Pub/Sub-shaped CloudEvents, and the retrain message pushed over
HTTP as the same kind of CloudEvent to a function served by functions-framework."""

from __future__ import annotations

import base64
import json
import threading
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from cloudevents.conversion import to_binary
from cloudevents.http import from_dict
from werkzeug.serving import make_server

from forecastguard.db.schema import health_checks
from forecastguard.messages import RetrainMessage
from forecastguard.publish import PUBSUB_EVENT_TYPE, HttpPushPublisher, PublishError
from tests.integration.health.conftest import EVENTS, app, use_service

STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def _event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def _stored(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(health_checks).order_by(health_checks.c.checked_at)).all()


def test_scheduled_event_runs_the_check(filled_engine) -> None:
    use_service(filled_engine)
    client = app("health_pubsub", "cloudevent").test_client()
    response = client.post("/", json=_event("scheduled_with_window.json"), headers=STRUCTURED)
    assert response.status_code == 200, response.get_data(as_text=True)
    (row,) = _stored(filled_engine)
    assert row.healthy and row.window_end.isoformat() == "2026-05-30" and row.n_products == 20


def test_binary_mode_event_and_event_without_parameters(filled_engine) -> None:
    use_service(filled_engine)
    client = app("health_pubsub", "cloudevent").test_client()
    raw = _event("scheduled_no_data.json")
    headers, body = to_binary(from_dict(raw))
    response = client.post("/", data=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    (row,) = _stored(filled_engine)  # yesterday by default: nothing there
    assert not row.healthy and "empty window" in row.reasons


@pytest.mark.parametrize("data", [None, "!!not base64!!", "bm90IGpzb24="])
def test_malformed_parameters_are_dropped_not_retried(filled_engine, caplog, data) -> None:
    use_service(filled_engine)
    client = app("health_pubsub", "cloudevent").test_client()
    event = _event("scheduled_bad_window.json")  # window_days 0
    if data is not None:
        event["data"]["message"]["data"] = data  # not base64 / base64 of "not json"
    response = client.post("/", json=event, headers=STRUCTURED)
    assert response.status_code == 200  # acknowledged: redelivery would not help
    assert _stored(filled_engine) == []
    assert any("malformed" in r.getMessage() for r in caplog.records)


@pytest.fixture
def receiver(tmp_path: Path):
    """A CloudEvent function served by functions-framework on a local port; it records."""
    log_file = tmp_path / "received.jsonl"
    source = tmp_path / "receiver.py"
    source.write_text(
        "import json\nimport functions_framework\n\n"
        "@functions_framework.cloud_event\n"
        "def receive(event):\n"
        "    if event.data['message']['attributes'].get('request_id') == 'fail':\n"
        "        raise RuntimeError('refused')\n"
        f"    with open({str(log_file)!r}, 'a') as out:\n"
        "        out.write(json.dumps({'attributes': dict(event.get_attributes()),"
        " 'data': event.data}) + '\\n')\n"
    )
    from functions_framework import create_app

    server = make_server("127.0.0.1", 0, create_app("receive", str(source), "cloudevent"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", log_file
    server.shutdown()


def test_unhealthy_check_pushes_the_pubsub_cloudevent(filled_engine, receiver) -> None:
    url, log_file = receiver
    service = use_service(filled_engine, rmse_threshold=0.1, retrain_topic=url)
    client = app("health_pubsub", "cloudevent").test_client()
    response = client.post("/", json=_event("scheduled_with_window.json"), headers=STRUCTURED)
    assert response.status_code == 200, response.get_data(as_text=True)
    (received,) = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert received["attributes"]["type"] == PUBSUB_EVENT_TYPE
    assert received["attributes"]["source"] == (
        "//pubsub.googleapis.com/projects/local/topics/retrain-requests"
    )
    message = received["data"]["message"]
    retrain = RetrainMessage.from_json(base64.b64decode(message["data"]))
    (row,) = _stored(filled_engine)
    assert retrain.health_check_id == row.id and retrain.window_end.isoformat() == "2026-05-30"
    assert message["attributes"]["request_id"] == retrain.request_id
    assert message["messageId"] == received["attributes"]["id"]
    assert retrain.reason.startswith("avg_rmse") and service.publisher is not None


def test_push_failure_raises_so_pubsub_redelivers(filled_engine, receiver) -> None:
    url, _ = receiver
    publisher = HttpPushPublisher(url)
    message = RetrainMessage("fail", "test", date(2026, 5, 1), date(2026, 5, 30))
    with pytest.raises(PublishError, match="answered 500"):
        publisher.publish(message)
    use_service(filled_engine, rmse_threshold=0.1, retrain_topic="http://127.0.0.1:9/nothing")
    client = app("health_pubsub", "cloudevent").test_client()
    response = client.post("/", json=_event("scheduled_with_window.json"), headers=STRUCTURED)
    assert response.status_code == 500  # the check is stored; the trigger is retried
    assert len(_stored(filled_engine)) == 1

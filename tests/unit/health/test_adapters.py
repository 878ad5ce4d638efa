"""The metrics sink and retrain publisher chosen by settings; the pushed CloudEvent's shape."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime

import pytest

from forecastguard.config import ConfigError, Settings
from forecastguard.messages import RetrainMessage
from forecastguard.metrics import (
    CloudMonitoringSink,
    JsonLinesSink,
    MetricPoint,
    make_metrics_sink,
)
from forecastguard.publish import (
    PUBSUB_EVENT_TYPE,
    HttpPushPublisher,
    PubSubPublisher,
    make_publisher,
    pubsub_cloudevent,
)

MESSAGE = RetrainMessage("abc123", "avg_rmse 21.40 > 18", date(2026, 5, 1), date(2026, 5, 30))


def test_metrics_sink_from_settings(tmp_path) -> None:
    assert make_metrics_sink(Settings.from_env({})) is None
    sink = make_metrics_sink(Settings.from_env({"METRICS_SINK": str(tmp_path / "m.jsonl")}))
    assert isinstance(sink, JsonLinesSink)
    cloud = make_metrics_sink(
        Settings.from_env({"METRICS_SINK": "cloud-monitoring", "GCP_PROJECT": "demo"})
    )
    assert isinstance(cloud, CloudMonitoringSink) and cloud.project == "demo"
    with pytest.raises(ConfigError, match="GCP_PROJECT"):
        make_metrics_sink(Settings.from_env({"METRICS_SINK": "cloud-monitoring"}))
    with pytest.raises(ValueError, match="batch_size"):
        CloudMonitoringSink("p", batch_size=201)


def test_json_lines_sink_appends_one_line_a_point(tmp_path) -> None:
    path = tmp_path / "sub" / "metrics.jsonl"
    sink = JsonLinesSink(path)
    when = datetime(2026, 5, 31, 6, 0, tzinfo=UTC)
    assert sink.write([MetricPoint("avg_rmse", 3.5)], when) == 1
    sink.write([MetricPoint("product_rmse", 1.0, {"product_id": "A"})], when)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {
            "metric": "custom.googleapis.com/forecastguard/avg_rmse",
            "labels": {},
            "value": 3.5,
            "time": "2026-05-31T06:00:00+00:00",
        },
        {
            "metric": "custom.googleapis.com/forecastguard/product_rmse",
            "labels": {"product_id": "A"},
            "value": 1.0,
            "time": "2026-05-31T06:00:00+00:00",
        },
    ]


@pytest.mark.parametrize(
    "point",
    [
        MetricPoint("avg_rmse", 3.5),
        MetricPoint("product_rmse", 0.1 + 0.2, {"product_id": "P0001"}),
        MetricPoint("product_drift", -0.0, {"product_id": 'caf\u00e9 "x"\n', "kind": "level"}),
        MetricPoint("global_p_value", float("nan")),
        MetricPoint("x", float("inf"), {"\U0001f600": "\u2028"}),
        MetricPoint("x", 1e-300),
        MetricPoint("x", 3, {"n": 1}),  # type: ignore[dict-item]
        MetricPoint("x", True),
    ],
)
def test_json_lines_are_what_json_dumps_writes(tmp_path, point: MetricPoint) -> None:
    when = datetime(2026, 5, 31, 6, 0, tzinfo=UTC)
    path = tmp_path / "metrics.jsonl"
    JsonLinesSink(path).write([point], when)
    expected = json.dumps(
        {
            "metric": point.metric_type,
            "labels": dict(point.labels),
            "value": point.value,
            "time": "2026-05-31T06:00:00+00:00",
        }
    )
    assert path.read_text() == expected + "\n"


def test_publisher_from_settings() -> None:
    assert make_publisher(Settings.from_env({})) is None
    pubsub = make_publisher(Settings.from_env({"RETRAIN_TOPIC": "projects/p/topics/retrain"}))
    assert isinstance(pubsub, PubSubPublisher) and pubsub.topic == "projects/p/topics/retrain"
    push = make_publisher(Settings.from_env({"RETRAIN_TOPIC": "http://127.0.0.1:8082/"}))
    assert isinstance(push, HttpPushPublisher) and push.url == "http://127.0.0.1:8082/"
    with pytest.raises(ConfigError, match="projects/P/topics/T"):
        make_publisher(Settings.from_env({"RETRAIN_TOPIC": "retrain-requests"}))


def test_pushed_event_is_what_eventarc_delivers_for_pubsub() -> None:
    headers, body = pubsub_cloudevent(MESSAGE, "projects/demo/topics/retrain-requests")
    assert headers["content-type"] == "application/cloudevents+json"
    event = json.loads(body)
    assert event["specversion"] == "1.0" and event["type"] == PUBSUB_EVENT_TYPE
    assert event["source"] == "//pubsub.googleapis.com/projects/demo/topics/retrain-requests"
    message = event["data"]["message"]
    assert RetrainMessage.from_json(base64.b64decode(message["data"])) == MESSAGE
    assert message["attributes"]["request_id"] == "abc123"
    assert message["messageId"] == event["id"]
    assert event["data"]["subscription"] == "projects/demo/subscriptions/retrain-requests-push"

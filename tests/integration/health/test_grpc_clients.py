"""Metrics and retrain publishing through the real client libraries, against a gRPC
server that records the requests (what would go over the wire to Google)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import grpc
import pytest
from google.cloud import monitoring_v3, pubsub_v1
from google.cloud.monitoring_v3.services.metric_service.transports import (
    MetricServiceGrpcTransport,
)
from google.protobuf import empty_pb2
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.types import PublishRequest, PublishResponse

from forecastguard.config import Settings
from forecastguard.health.check import HealthParams, compute_health
from forecastguard.health.service import HealthService, health_points
from forecastguard.messages import RetrainMessage
from forecastguard.metrics import (
    TOP_PRODUCTS,
    CloudMonitoringSink,
    MetricPoint,
    MetricsWriteError,
    top_products,
)
from forecastguard.publish import PubSubPublisher
from tests.integration.health.synthetic import frames, synthetic_window, write
from tests.support.grpc_recorder import GrpcRecorder

CREATE = "/google.monitoring.v3.MetricService/CreateTimeSeries"
PUBLISH = "/google.pubsub.v1.Publisher/Publish"
AS_OF = date(2026, 5, 30)
TOPIC = "projects/demo-project/topics/retrain-requests"


def _monitoring(rec: GrpcRecorder) -> monitoring_v3.MetricServiceClient:
    return monitoring_v3.MetricServiceClient(
        transport=MetricServiceGrpcTransport(channel=rec.channel())
    )


def _publisher(rec: GrpcRecorder) -> pubsub_v1.PublisherClient:
    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=rec.channel()))


def test_metrics_go_out_in_batches_of_at_most_200() -> None:
    data = synthetic_window(1_150, AS_OF, seed=1)
    result = compute_health(data, HealthParams())
    points = health_points(result)
    # healthy, avg_rmse, p, share + the null spreads (level, scale) + products checked and
    # RMSE/RMSSE quantiles (7) + rmse and p of the top products (issue 24: the worst 50
    # and the 50 most drifted) + drift counts by kind (3) + flag and q of the top drifted;
    # no slow share: this window's reference holds no placebo evidence (not fitted)
    top = top_products(result.products)
    n_drifted = min(TOP_PRODUCTS, int(result.products["drift"].sum()))
    assert len(top) == TOP_PRODUCTS
    assert "slow_share_mean" not in result.drift_model
    assert len(points) == 4 + 2 + 7 + 2 * len(top) + 3 + 2 * n_drifted
    with GrpcRecorder() as rec:
        rec.respond(CREATE, empty_pb2.Empty())
        sink = CloudMonitoringSink("demo-project", _monitoring(rec))
        requests = sink.write(points, datetime(2026, 5, 31, 6, 0, tzinfo=UTC))
        calls = rec.calls_to(CREATE)
    assert requests == len(calls) == -(-len(points) // 200)
    parsed = [c.parse(monitoring_v3.CreateTimeSeriesRequest) for c in calls]
    sizes = [len(p.time_series) for p in parsed]
    assert max(sizes) <= 200 and sum(sizes) == len(points)
    assert all(p.name == "projects/demo-project" for p in parsed)
    series = [ts for p in parsed for ts in p.time_series]
    by_type = {}
    for ts in series:
        by_type.setdefault(ts.metric.type, []).append(ts)
    prefix = "custom.googleapis.com/forecastguard/"
    assert set(by_type) == {
        prefix + n
        for n in (
            "healthy",
            "avg_rmse",
            "global_p_value",
            "drifted_share",
            "drift_null_sd",
            "product_rmse",
            "product_ks_pvalue",
            "drifted_products",
            "products_checked",
            "product_rmse_quantile",
            "product_rmsse_quantile",
        )
    } | (
        {prefix + "product_drift", prefix + "product_drift_qvalue"}
        if result.drift_detected
        else set()
    )
    first = by_type[prefix + "product_rmse"][0]
    assert first.metric.labels["product_id"] == top["product_id"].iloc[0]
    assert first.resource.type == "global" and first.resource.labels["project_id"] == "demo-project"
    assert first.points[0].value.double_value == pytest.approx(top["rmse"].iloc[0])
    assert (
        first.points[0].interval.end_time.timestamp()
        == datetime(2026, 5, 31, 6, 0, tzinfo=UTC).timestamp()
    )
    avg = by_type[prefix + "avg_rmse"][0]
    assert avg.points[0].value.double_value == pytest.approx(result.avg_rmse)


def test_a_failed_batch_does_not_stop_the_others() -> None:
    points = [MetricPoint("product_rmse", float(i), {"product_id": f"P{i}"}) for i in range(450)]
    with GrpcRecorder() as rec:
        rec.respond(CREATE, empty_pb2.Empty(), grpc.StatusCode.INVALID_ARGUMENT, empty_pb2.Empty())
        sink = CloudMonitoringSink("p", _monitoring(rec))
        with pytest.raises(MetricsWriteError, match="1 of 3 Cloud Monitoring requests failed"):
            sink.write(points, datetime.now(UTC))
        assert len(rec.calls_to(CREATE)) == 3


def test_metrics_failure_keeps_the_stored_result(sqlite_url: str) -> None:
    from forecastguard.db.engine import make_engine

    engine = make_engine(sqlite_url)
    write(engine, *frames(synthetic_window(20, AS_OF, seed=2)))
    with GrpcRecorder() as rec:
        rec.respond(CREATE, grpc.StatusCode.PERMISSION_DENIED)
        service = HealthService(
            Settings.from_env({}),
            engine=engine,
            metrics=CloudMonitoringSink("p", _monitoring(rec)),
        )
        result = service.run(AS_OF, 30)
    assert result.outputs["metrics"]["written"] is False
    assert "PERMISSION_DENIED" in result.outputs["metrics"]["error"] or "403" in str(
        result.outputs["metrics"]["error"]
    )
    with engine.connect() as conn:
        import sqlalchemy as sa

        ids = conn.execute(sa.text("SELECT id FROM health_checks")).scalars().all()
    assert ids == [result.check_id]
    engine.dispose()


def test_unhealthy_check_publishes_the_retrain_message(sqlite_url: str) -> None:
    from forecastguard.db.engine import make_engine

    engine = make_engine(sqlite_url)
    write(engine, *frames(synthetic_window(20, AS_OF, seed=3)))
    with GrpcRecorder() as rec:
        rec.respond(PUBLISH, PublishResponse(message_ids=["m-1"]))
        publisher = PubSubPublisher(TOPIC, _publisher(rec))
        settings = Settings.from_env({}, rmse_threshold=0.1)
        service = HealthService(settings, engine=engine, publisher=publisher)
        first = service.run(AS_OF, 30)
        second = service.run(AS_OF, 30)
        calls = rec.calls_to(PUBLISH)
    assert first.outputs["retrain"] == {
        "request_id": first.outputs["retrain"]["request_id"],
        "published": True,
        "error": None,
        "message_id": "m-1",
    }
    assert len(calls) == 2
    requests = [c.parse(PublishRequest) for c in calls]
    assert all(r.topic == TOPIC and len(r.messages) == 1 for r in requests)
    messages = [RetrainMessage.from_json(r.messages[0].data) for r in requests]
    # The same window asks for the same retrain: one request id for both checks.
    assert messages[0].request_id == messages[1].request_id
    assert messages[1].health_check_id == second.check_id != first.check_id
    assert requests[0].messages[0].attributes["request_id"] == messages[0].request_id
    body = json.loads(requests[0].messages[0].data)
    assert body["schema_version"] == 1 and body["health_check_id"] == first.check_id
    assert body["window_start"] == "2026-05-01" and body["window_end"] == "2026-05-30"
    assert body["model_version"] == "m1" and body["reason"].startswith("avg_rmse")
    engine.dispose()


def test_publish_failure_is_reported_not_raised(sqlite_url: str) -> None:
    from forecastguard.db.engine import make_engine

    engine = make_engine(sqlite_url)
    write(engine, *frames(synthetic_window(10, AS_OF, seed=4)))
    with GrpcRecorder() as rec:
        rec.respond(PUBLISH, grpc.StatusCode.NOT_FOUND)
        publisher = PubSubPublisher(TOPIC, _publisher(rec), timeout_s=20)
        service = HealthService(
            Settings.from_env({}, rmse_threshold=0.1), engine=engine, publisher=publisher
        )
        result = service.run(AS_OF, 30)
    assert result.outputs["retrain"]["published"] is False
    assert (
        "publishing to projects/demo-project/topics/retrain-requests failed"
        in (result.outputs["retrain"]["error"])
    )
    engine.dispose()

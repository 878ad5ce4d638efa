"""Run a health check end to end: read, compute, store, write metrics, ask for a retrain.

`HealthService` holds what one process reuses (settings, the engine, the metrics sink,
the publisher), each created on first use; tests pass their own. The stored result is
never lost to a metrics or publishing failure: those are logged and reported in the
result's `metrics` and `retrain` fields.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any

import sqlalchemy as sa

from forecastguard.config import Settings
from forecastguard.health.check import HealthParams, HealthResult, compute_health, needs_holdout
from forecastguard.health.store import store_result
from forecastguard.health.window import load_residuals, load_window
from forecastguard.logs import get_logger, timed
from forecastguard.messages import RetrainMessage, make_request_id
from forecastguard.metrics import MetricPoint, MetricsSink, make_metrics_sink
from forecastguard.publish import RetrainPublisher, make_publisher

log = get_logger(__name__)


def default_as_of(today: date | None = None) -> date:
    """Yesterday (UTC): the newest day whose sales are complete."""
    return (today or datetime.now(UTC).date()) - timedelta(days=1)


def health_points(result: HealthResult) -> list[MetricPoint]:
    """The custom metrics of a check: model-level gauges and per-product RMSE and p-value."""
    points = [MetricPoint("healthy", 1.0 if result.healthy else 0.0)]
    for name, value in (
        ("avg_rmse", result.avg_rmse),
        ("global_p_value", result.p_value),
        ("drifted_share", result.drifted_share),
    ):
        if value is not None:
            points.append(MetricPoint(name, float(value)))
    frame = result.products
    for column, name in (("rmse", "product_rmse"), ("ks_pvalue", "product_ks_pvalue")):
        ok = frame[column].notna()
        ids = frame.loc[ok, "product_id"].tolist()
        values = frame.loc[ok, column].tolist()
        points.extend(
            MetricPoint(name, v, {"product_id": p}) for p, v in zip(ids, values, strict=True)
        )
    return points


def retrain_message(result: HealthResult) -> RetrainMessage:
    """The retrain request of an unhealthy check.

    Its request id hashes (window end, model version, reason kinds) — kinds such as
    "rmse" or "drift", not the texts with their numbers — so repeated checks of the same
    window ask for one retrain, however the figures move.
    """
    return RetrainMessage(
        request_id=make_request_id(result.window_end, result.model_version, result.reason_kinds),
        reason="; ".join(result.reasons),
        window_start=result.window_start,
        window_end=result.window_end,
        health_check_id=result.check_id,
        model_version=result.model_version,
    )


class HealthService:
    """The health check with its outside services; each is created once, on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: sa.Engine | None = None,
        metrics: MetricsSink | None = None,
        publisher: RetrainPublisher | None = None,
    ) -> None:
        self.settings = settings
        if engine is not None:
            self.engine = engine
        if metrics is not None:
            self.metrics = metrics
        if publisher is not None:
            self.publisher = publisher

    @cached_property
    def engine(self) -> sa.Engine:
        """The database engine (pooled, reused across checks)."""
        from forecastguard.db.engine import make_engine

        return make_engine(self.settings)

    @cached_property
    def metrics(self) -> MetricsSink | None:
        """The metrics sink of METRICS_SINK, or None."""
        return make_metrics_sink(self.settings)

    @cached_property
    def publisher(self) -> RetrainPublisher | None:
        """The retrain publisher of RETRAIN_TOPIC, or None."""
        return make_publisher(self.settings)

    def run(self, as_of: date | None = None, window_days: int | None = None) -> HealthResult:
        """Check the window of `window_days` days ending `as_of` and act on the result.

        Raises `DatabaseUnavailable` when the database cannot be reached.
        """
        from forecastguard.db.engine import check_connection

        as_of = as_of or default_as_of()
        window_days = window_days or self.settings.window_days
        params = HealthParams.from_settings(self.settings)
        engine = self.engine
        check_connection(engine)
        with timed(log, "health check", as_of=as_of.isoformat(), window_days=window_days) as f:
            start = time.perf_counter()
            data = load_window(engine, as_of, window_days)
            holdout = None
            if data.current_version and needs_holdout(data, params.min_samples):
                holdout = load_residuals(engine, data.current_version, data.products)
            result = compute_health(data, params, holdout)
            result.check_id = str(uuid.uuid4())
            result.checked_at = datetime.now(UTC).replace(microsecond=0)
            result.duration_s = time.perf_counter() - start
            store_result(engine, result)
            f.update(
                check_id=result.check_id,
                healthy=result.healthy,
                avg_rmse=result.avg_rmse,
                p_value=result.p_value,
                n_products=result.n_products,
                reasons=result.reason_kinds,
                compute_s=round(result.duration_s, 4),
            )
        result.outputs["metrics"] = self._write_metrics(result)
        result.outputs["retrain"] = self._request_retrain(result)
        return result

    def _write_metrics(self, result: HealthResult) -> dict[str, Any]:
        sink = self.metrics
        if sink is None:
            return {"written": False, "error": None, "note": "METRICS_SINK is not set"}
        points = health_points(result)
        try:
            with timed(log, "health metrics written", points=len(points)) as f:
                f["requests"] = sink.write(points, result.checked_at or datetime.now(UTC))
        except Exception as exc:
            log.exception("writing the health metrics failed", extra={"check_id": result.check_id})
            return {"written": False, "error": str(exc)}
        return {"written": True, "error": None, "points": len(points)}

    def _request_retrain(self, result: HealthResult) -> dict[str, Any] | None:
        if result.healthy:
            return None
        message = retrain_message(result)
        outcome: dict[str, Any] = {
            "request_id": message.request_id,
            "published": False,
            "error": None,
        }
        publisher = self.publisher
        if publisher is None:
            log.warning("model unhealthy but RETRAIN_TOPIC is not set: no retrain requested")
            outcome["skipped"] = "RETRAIN_TOPIC is not set"
            return outcome
        try:
            with timed(log, "retrain requested", request_id=message.request_id):
                outcome["message_id"] = publisher.publish(message)
        except Exception as exc:
            log.exception("requesting a retrain failed", extra={"request_id": message.request_id})
            outcome["error"] = str(exc)
            return outcome
        outcome["published"] = True
        return outcome


_service: HealthService | None = None
_service_lock = threading.Lock()


def get_service() -> HealthService:
    """The process's service, built from the environment on first use."""
    global _service
    with _service_lock:
        if _service is None:
            _service = HealthService(Settings.from_env())
        return _service


def set_service(service: HealthService | None) -> None:
    """Use this service in this process (tests); None rebuilds from the environment."""
    global _service
    with _service_lock:
        _service = service

"""Run a health check end to end: read, compute, store, write metrics, ask for a retrain.

`HealthService` holds what one process reuses (settings, the engine, the metrics sink,
the publisher), each created on first use; tests pass their own. The stored result is
never lost to a metrics or publishing failure: those are logged and reported in the
result's `metrics` and `retrain` fields.

A database failure anywhere in a check (refused, cut mid-read or mid-store, stalled past
its timeout, locked, tables missing) raises `DatabaseUnavailable` (`SchemaMissing` for
missing tables); the store is one transaction, so nothing is half-written. A check asked
for by a Pub/Sub event is stored under the event's id: a redelivery reuses it.

Missing or stale sales make the model unhealthy but never ask for a retrain (retraining
cannot make up data): they raise an alert (an ERROR log line `health data missing`).
A drift that persists after a rejected challenger asks again only when something new
happens or its back-off is over (`forecastguard.health.backoff`, RETRAIN_BACKOFF_DAYS).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import sqlalchemy as sa

from forecastguard.config import ConfigError, Settings
from forecastguard.db.engine import database_error, database_errors
from forecastguard.db.schema import health_checks, sales
from forecastguard.health.backoff import decide as decide_backoff
from forecastguard.health.check import (
    HealthParams,
    HealthResult,
    compute_health,
    interval_coverage,
    needs_holdout,
    retrain_held,
)
from forecastguard.health.episodes import load_episodes
from forecastguard.health.store import store_result
from forecastguard.health.window import WindowData, load_residuals, load_window, with_episodes
from forecastguard.logs import get_logger, timed
from forecastguard.messages import RetrainMessage, make_request_id
from forecastguard.metrics import (
    MetricPoint,
    MetricsSink,
    aggregate_points,
    drift_points,
    make_metrics_sink,
    top_products,
)
from forecastguard.publish import RetrainPublisher, make_publisher

log = get_logger(__name__)


def default_as_of(today: date | None = None) -> date:
    """Yesterday (UTC): the newest day whose sales are complete."""
    return (today or datetime.now(UTC).date()) - timedelta(days=1)


def health_points(result: HealthResult) -> list[MetricPoint]:
    """The custom metrics of a check: model-level gauges (with the drift test's fitted
    null spread, `drift_null_sd{kind}`) and per-product RMSE and p-value."""
    points = [MetricPoint("healthy", 1.0 if result.healthy else 0.0)]
    for name, value in (
        ("avg_rmse", result.avg_rmse),
        ("global_p_value", result.p_value),
        ("drifted_share", result.drifted_share),
        ("interval_coverage", interval_coverage(result.products)),  # issue 27, nominal 0.8
    ):
        if value is not None:
            points.append(MetricPoint(name, float(value)))
    # The drift test's fitted null spread (issue 23): a change shared by most products is
    # absorbed into it rather than flagged, so it is watched on its own.
    for kind in ("level", "scale"):
        spread = result.drift_model.get(f"null_sd_{kind}")
        if spread is not None:
            points.append(MetricPoint("drift_null_sd", float(spread), {"kind": kind}))
    # The catalogue's mean share of slow (month-to-month) error variance, where fitted.
    slow = result.drift_model.get("slow_share_mean")
    if slow is not None:
        points.append(MetricPoint("drift_slow_share", float(slow)))
    # Per-product series for the top drifted and worst products only, and catalogue-wide
    # aggregates: a fixed number of series whatever the catalogue's size (issue 24).
    points.extend(aggregate_points(result.products))
    frame = top_products(result.products)
    for column, name in (("rmse", "product_rmse"), ("ks_pvalue", "product_ks_pvalue")):
        ok = frame[column].notna()
        ids = frame.loc[ok, "product_id"].tolist()
        values = frame.loc[ok, column].tolist()
        points.extend(
            MetricPoint(name, v, {"product_id": p}) for p, v in zip(ids, values, strict=True)
        )
    points.extend(drift_points(result.products))  # counts by kind, top drifted (issue 13)
    return points


# Reasons that retraining cannot fix: no data in the window, or none lately.
DATA_MISSING = frozenset({"empty", "stale"})


def retrain_message(result: HealthResult | dict[str, Any]) -> RetrainMessage:
    """The retrain request of an unhealthy check (a result, or its stored summary).

    Its request id hashes (window end, model version, reason kinds) — kinds such as
    "rmse" or "drift", not the texts with their numbers — so repeated checks of the same
    window ask for one retrain, however the figures move.
    """
    s = result if isinstance(result, dict) else result.summary()
    window_end = date.fromisoformat(s["window_end"])
    return RetrainMessage(
        request_id=make_request_id(window_end, s["model_version"], s["reason_kinds"]),
        reason="; ".join(s["reasons"])
        + (f"; report: {s['report_url']}" if s.get("report_url") else ""),
        window_start=date.fromisoformat(s["window_start"]),
        window_end=window_end,
        health_check_id=s["check_id"],
        model_version=s["model_version"],
    )


class StoredCheck:
    """A check already stored for a Pub/Sub event (a redelivery): its summary."""

    def __init__(self, summary: dict[str, Any]) -> None:
        self.summary = summary
        self.outputs: dict[str, Any] = {}

    @property
    def healthy(self) -> bool:
        """Whether the stored check found the model healthy."""
        return bool(self.summary["healthy"])

    @property
    def reason_kinds(self) -> list[str]:
        """The stored check's reason kinds."""
        return list(self.summary.get("reason_kinds") or [])

    @property
    def check_id(self) -> str | None:
        """The stored check's id."""
        return self.summary.get("check_id")

    def to_dict(self) -> dict[str, Any]:
        """The stored summary as `/model/health` answers it: marked `stored`, without the
        per-product list (a check at scale keeps those rows in its data plane)."""
        return {**self.summary, "stored": True}


class NoStoredCheck(LookupError):
    """`/model/health` on an installation whose checks run on Dataflow, before any check
    ending on or before the asked day (with its window) has been stored."""


class LaunchedCheck:
    """A scheduled check handed to Dataflow (issue 24): the launch's outcome."""

    def __init__(self, launch: dict[str, Any]) -> None:
        self.outputs: dict[str, Any] = {"dataflow": launch}


def count_products(engine: sa.Engine, as_of: date, window_days: int) -> int:
    """Products with sales in the window of `window_days` days ending `as_of` (the size
    the engine choice compares)."""
    start = as_of - timedelta(days=window_days - 1)
    query = sa.select(sa.func.count(sa.distinct(sales.c.product_id))).where(
        sales.c.sale_date.between(start, as_of)
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


class HealthService:
    """The health check with its outside services; each is created once, on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: sa.Engine | None = None,
        metrics: MetricsSink | None = None,
        publisher: RetrainPublisher | None = None,
        dataflow: Any = None,
    ) -> None:
        self.settings = settings
        if engine is not None:
            self.engine = engine
        if metrics is not None:
            self.metrics = metrics
        if publisher is not None:
            self.publisher = publisher
        if dataflow is not None:
            self.dataflow = dataflow

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

    def run(
        self,
        as_of: date | None = None,
        window_days: int | None = None,
        *,
        event_id: str | None = None,
    ) -> HealthResult | StoredCheck:
        """Check the window of `window_days` days ending `as_of` and act on the result.

        With `event_id` (a Pub/Sub event), a check already stored for that event is
        reused (`StoredCheck`): only its retrain request is asked for again.
        Raises `DatabaseUnavailable` (or `SchemaMissing`) when the database fails.
        """
        try:
            if event_id is not None:
                stored = self._stored_for_event(event_id)
                if stored is not None:
                    log.info(
                        "health check reused for a redelivered event",
                        extra={"event_id": event_id, "check_id": stored.check_id},
                    )
                    stored.outputs["retrain"] = self._request_retrain(stored)
                    return stored
            result = self._check(as_of, window_days, event_id)
        except sa.exc.IntegrityError:
            # Two deliveries of one event raced: the other stored it first; reuse it.
            stored = self._stored_for_event(event_id) if event_id is not None else None
            if stored is None:
                raise
            log.info("health check stored by a concurrent delivery", extra={"event_id": event_id})
            stored.outputs["retrain"] = self._request_retrain(stored)
            return stored
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            error = database_error(exc)
            if error is None:
                raise
            raise error from exc
        return self._act(result)

    def answer(
        self, as_of: date | None = None, window_days: int | None = None
    ) -> HealthResult | StoredCheck:
        """`/model/health`: the check run here, unless this installation's checks run on
        Dataflow (a BigQuery installation, or a catalogue above
        HEALTH_MAX_INPROCESS_PRODUCTS; issue 24): then the newest stored check ending on or
        before `as_of` with that window, since a request must neither read a data plane
        this process does not hold nor launch a job. Raises `NoStoredCheck` when there is
        none yet, `DatabaseUnavailable` when the database fails."""
        from forecastguard.health.engine import INPROCESS

        as_of = as_of or default_as_of()
        days = window_days or self.settings.window_days
        with database_errors():
            engine, n = self.choose(as_of, days)
        if engine == INPROCESS:
            return self.run(as_of, days)
        with database_errors():
            stored = self._latest_stored(as_of, days)
        if stored is None:
            raise NoStoredCheck(
                f"no stored health check ends on or before {as_of.isoformat()} with a "
                f"{days}-day window yet: this installation's checks run on Dataflow, "
                "on schedule"
            )
        log.info(
            "health answered with a stored check",
            extra={"check_id": stored.check_id, "engine": engine, "products": n},
        )
        return stored

    def _latest_stored(self, as_of: date, window_days: int) -> StoredCheck | None:
        """The newest stored check with `window_days` days ending on or before `as_of`."""
        c = health_checks.c
        query = (
            sa.select(c.window_start, c.window_end, c.result_json)
            .where(c.as_of <= as_of)
            .order_by(c.as_of.desc(), c.checked_at.desc())
            .limit(50)
        )
        with self.engine.connect() as conn:
            for start, end, text in conn.execute(query):
                if (end - start).days + 1 == window_days:
                    return StoredCheck(json.loads(text))
        return None

    @cached_property
    def dataflow(self) -> Any:
        """The Dataflow Flex Templates client (created on the first hand-over)."""
        from google.cloud import dataflow_v1beta3

        return dataflow_v1beta3.FlexTemplatesServiceClient()

    def choose(self, as_of: date, window_days: int) -> tuple[str, int | None]:
        """(engine, products counted) of a scheduled check (issue 24): in-process unless
        DATAFLOW_TEMPLATE is set; then Dataflow for a BigQuery installation (no count), or
        above HEALTH_MAX_INPROCESS_PRODUCTS products with sales in the window."""
        from forecastguard.health.engine import INPROCESS, choose_engine

        s = self.settings
        if not s.dataflow_template:
            return INPROCESS, None
        if s.bigquery_url:
            return choose_engine(0, on_bigquery=True, max_inprocess_products=0), None
        n = count_products(self.engine, as_of, window_days)
        return (
            choose_engine(
                n, on_bigquery=False, max_inprocess_products=s.health_max_inprocess_products
            ),
            n,
        )

    def run_scheduled(
        self,
        as_of: date | None = None,
        window_days: int | None = None,
        *,
        event_id: str | None = None,
    ) -> HealthResult | StoredCheck | LaunchedCheck:
        """The scheduled check: on the engine `choose` picks. On Dataflow, launch the Flex
        Template and return at once (`LaunchedCheck`; the job stores the result, writes the
        metrics and asks for the retrain); raises `LaunchError` when the launch fails and
        `DatabaseUnavailable` when counting the products does."""
        from forecastguard.health.dataflow import build_launch, launch
        from forecastguard.health.engine import DATAFLOW

        as_of = as_of or default_as_of()
        days = window_days or self.settings.window_days
        with database_errors():
            engine, n = self.choose(as_of, days)
        the_launch = None
        if engine == DATAFLOW:
            try:
                the_launch = build_launch(self.settings, as_of, days, event_id)
            except ConfigError as exc:
                log.error(
                    "health check cannot be handed to dataflow: runs in-process",
                    extra={"error": str(exc), "products": n},
                )
        if the_launch is None:
            return self.run(as_of, window_days, event_id=event_id)
        with timed(log, "health check handed to dataflow", job_name=the_launch.job_name) as f:
            outcome = launch(the_launch, self.dataflow)
            f.update(job_id=outcome.get("job_id"), products=n, event_id=event_id)
        return LaunchedCheck(outcome)

    def _stored_for_event(self, event_id: str) -> StoredCheck | None:
        with self.engine.connect() as conn:
            text = conn.execute(
                sa.select(health_checks.c.result_json).where(health_checks.c.event_id == event_id)
            ).scalar()
        return None if text is None else StoredCheck(json.loads(text))

    def _check(
        self, as_of: date | None, window_days: int | None, event_id: str | None
    ) -> HealthResult:
        from forecastguard.db.engine import check_connection

        as_of = as_of or default_as_of()
        window_days = window_days or self.settings.window_days
        params = HealthParams.from_settings(self.settings)
        engine = self.engine
        check_connection(engine)
        with timed(log, "health check", as_of=as_of.isoformat(), window_days=window_days) as f:
            start = time.perf_counter()
            data = load_window(engine, as_of, window_days, self.settings.reference_days or None)
            # Issue 23: the served model's open drift episodes (a shift stays flagged).
            data = with_episodes(data, load_episodes(engine, data.current_version))
            holdout = None
            if data.current_version and needs_holdout(data, params.min_samples):
                holdout = load_residuals(engine, data.current_version, data.products)
            result = compute_health(data, params, holdout)
            result.check_id = str(uuid.uuid4())
            result.checked_at = datetime.now(UTC).replace(microsecond=0)
            result.duration_s = time.perf_counter() - start
            bad = data.bad_data()
            if bad:
                # Reported per product; those values took no part in the check.
                result.outputs["bad_data"] = bad
                log.warning(
                    "health data has values that are not finite numbers",
                    extra={"products": len(bad), "first": bad[0]["product_id"]},
                )
            self._decide_backoff(result)
            self._report_and_store(result, data, holdout, event_id)
            f.update(
                check_id=result.check_id,
                healthy=result.healthy,
                avg_rmse=result.avg_rmse,
                p_value=result.p_value,
                n_products=result.n_products,
                reasons=result.reason_kinds,
                compute_s=round(result.duration_s, 4),
            )
        return result

    def finish(
        self,
        result: HealthResult,
        *,
        data: WindowData | None = None,
        holdout: tuple[np.ndarray, np.ndarray] | None = None,
        event_id: str | None = None,
        store_products: bool = True,
    ) -> HealthResult:
        """Act on a result computed elsewhere (the Beam pipeline, issue 24) as `run` does:
        the report (plotting the products of `data`), the stored summary (with the
        per-product rows unless `store_products` is False: a BigQuery installation keeps
        them in BigQuery), the metrics and the retrain request."""
        result.check_id = result.check_id or str(uuid.uuid4())
        result.checked_at = result.checked_at or datetime.now(UTC).replace(microsecond=0)
        with database_errors():
            self._decide_backoff(result)
            self._report_and_store(result, data, holdout, event_id, products=store_products)
        return self._act(result)

    def _decide_backoff(self, result: HealthResult) -> None:
        """Issue 23: whether a retrain the result would ask for is held back because a
        challenger of the same champion was rejected and nothing new happened since
        (`forecastguard.health.backoff`); stored with the result as
        `outputs["retrain_backoff"]`, so a redelivered event decides the same."""
        days = self.settings.retrain_backoff_days
        if days <= 0 or result.healthy or not result.model_version:
            return
        with self.engine.connect() as conn:
            decision = decide_backoff(
                conn,
                result.summary(),
                result.products,
                base_days=days,
                now=result.checked_at or datetime.now(UTC),
            )
        if decision is not None:
            result.outputs["retrain_backoff"] = decision
            log.info(
                "retrain back-off",
                extra={"held": decision["held"], "reason": decision["reason"]},
            )

    def _report_and_store(
        self,
        result: HealthResult,
        data: WindowData | None,
        holdout: tuple[np.ndarray, np.ndarray] | None,
        event_id: str | None,
        *,
        products: bool = True,
    ) -> None:
        """The check's HTML report (issue 17), written before the result is stored so the
        stored summary holds its address (`report_uri`; drawing never raises), then the
        stored result."""
        if self.settings.artifact_uri:
            from forecastguard.report.check_page import attach_report

            attach_report(self.settings.artifact_uri, result, data, holdout)
        store_result(self.engine, result, event_id, products=products)

    def _act(self, result: HealthResult) -> HealthResult:
        """Write the result's metrics and ask for a retrain when it says so."""
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

    def _request_retrain(self, result: HealthResult | StoredCheck) -> dict[str, Any] | None:
        if result.healthy:
            return None
        summary = result.summary if isinstance(result, StoredCheck) else result.summary()
        missing = sorted(DATA_MISSING & set(result.reason_kinds))
        if missing:
            log.error(
                "health data missing: alert, no retrain requested",
                extra={
                    "alert": "health_data_missing",
                    "reason_kinds": missing,
                    "window_end": summary["window_end"],
                    "check_id": summary["check_id"],
                },
            )
            return {
                "published": False,
                "error": None,
                "skipped": f"data {' and '.join(missing)}: retraining cannot fix missing data",
                "alert": "health_data_missing",
            }
        held = retrain_held(summary)
        if held:
            log.info(
                "drift below the retrain level: no retrain requested",
                extra={"window_end": summary["window_end"], "p_value": summary["p_value"]},
            )
            return {"published": False, "error": None, "skipped": held}
        backoff = summary.get("retrain_backoff") or {}
        if backoff.get("held"):
            return {"published": False, "error": None, "skipped": backoff["reason"]}
        message = retrain_message(summary)
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

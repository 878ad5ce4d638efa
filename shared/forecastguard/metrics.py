"""The metrics sink: Cloud Monitoring custom metrics, or JSON lines in a local file.

`METRICS_SINK=cloud-monitoring` writes gauges under `custom.googleapis.com/forecastguard/`
to the project `GCP_PROJECT`, at most 200 time series a request (the API's limit);
any other value is a file path that gets one JSON object per point.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from forecastguard.config import ConfigError, Settings
from forecastguard.logs import get_logger

log = get_logger(__name__)

METRIC_PREFIX = "custom.googleapis.com/forecastguard/"
MAX_SERIES_PER_REQUEST = 200  # Cloud Monitoring's limit for timeSeries.create
CLOUD_MONITORING = "cloud-monitoring"


@dataclass(frozen=True)
class MetricPoint:
    """One gauge value of a custom metric, e.g. ("product_rmse", 3.2, {"product_id": "A"})."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def metric_type(self) -> str:
        """The full metric type, under custom.googleapis.com/forecastguard/."""
        return METRIC_PREFIX + self.name


class MetricsWriteError(RuntimeError):
    """Some metrics could not be written; the message says how many and why."""


class MetricsSink(Protocol):
    """Something that records gauge points taken at `end_time`."""

    def write(self, points: Sequence[MetricPoint], end_time: datetime) -> int:
        """Write the points; return the number of requests (or lines) written."""
        ...


class JsonLinesSink:
    """Appends one JSON object a point to a local file (the embedded default)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, points: Sequence[MetricPoint], end_time: datetime) -> int:
        """Append the points; return the number of lines written."""
        stamp = _json(end_time.astimezone(UTC).isoformat())
        lines = [_json_line(p, stamp) for p in points]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in lines))
        return len(lines)


_json = json.encoder.encode_basestring_ascii  # a str as json.dumps writes it


def _json_line(point: MetricPoint, stamp: str) -> str:
    """`json.dumps({"metric", "labels", "value", "time"})` of a point, character for
    character, without json.dumps's per-call set-up (10,000-product checks write 20,000
    points). Labels of anything but strings, and values but floats, go through json."""
    labels = point.labels
    if all(type(k) is str and type(v) is str for k, v in labels.items()):
        text = "{" + ", ".join(f"{_json(k)}: {_json(v)}" for k, v in labels.items()) + "}"
    else:
        text = json.dumps(dict(labels))
    value = point.value
    number = repr(value) if type(value) is float and math.isfinite(value) else json.dumps(value)
    return (
        f'{{"metric": {_json(point.metric_type)}, "labels": {text}, '
        f'"value": {number}, "time": {stamp}}}'
    )


class CloudMonitoringSink:
    """Writes gauges to Cloud Monitoring, in requests of at most 200 time series.

    The client (google-cloud-monitoring's MetricServiceClient) is created on first use,
    once; pass one to use another transport (tests).
    """

    def __init__(
        self,
        project: str,
        client: Any = None,
        *,
        batch_size: int = MAX_SERIES_PER_REQUEST,
        timeout_s: float = 30.0,
    ) -> None:
        if not 1 <= batch_size <= MAX_SERIES_PER_REQUEST:
            raise ValueError(f"batch_size must be 1..{MAX_SERIES_PER_REQUEST}, got {batch_size}")
        self.project = project
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The MetricServiceClient, created on first use."""
        with self._lock:
            if self._client is None:
                from google.cloud import monitoring_v3

                self._client = monitoring_v3.MetricServiceClient()
            return self._client

    def write(self, points: Sequence[MetricPoint], end_time: datetime) -> int:
        """Send every point; raise `MetricsWriteError` after trying all batches if any failed."""
        from google.api import metric_pb2
        from google.cloud import monitoring_v3

        interval = monitoring_v3.TimeInterval(end_time=end_time.astimezone(UTC))
        series = [
            monitoring_v3.TimeSeries(
                metric={"type": p.metric_type, "labels": dict(p.labels)},
                resource={"type": "global", "labels": {"project_id": self.project}},
                metric_kind=metric_pb2.MetricDescriptor.MetricKind.GAUGE,
                value_type=metric_pb2.MetricDescriptor.ValueType.DOUBLE,
                points=[monitoring_v3.Point(interval=interval, value={"double_value": p.value})],
            )
            for p in points
        ]
        name = f"projects/{self.project}"
        requests = failed = 0
        first_error: Exception | None = None
        for start in range(0, len(series), self.batch_size):
            requests += 1
            try:
                self.client.create_time_series(
                    name=name,
                    time_series=series[start : start + self.batch_size],
                    timeout=self.timeout_s,
                )
            except Exception as exc:  # keep going: one bad batch must not drop the others
                failed += 1
                first_error = first_error or exc
        if failed:
            raise MetricsWriteError(
                f"{failed} of {requests} Cloud Monitoring requests failed: {first_error}"
            ) from first_error
        return requests


DRIFT_KINDS = ("level", "scale", "shape")
# Per-product series only for this many drifted products (smallest q first) and this many
# worst ones (highest RMSSE): Cloud Monitoring allows 200,000 active series per metric
# type on `global`, which two per-product gauges of every product used up at 100,000
# products (issue 24). The whole catalogue is in the stored per-product rows.
TOP_PRODUCTS = 50
QUANTILES = (0.5, 0.9, 0.99)


def top_products(products: Any, limit: int = TOP_PRODUCTS) -> Any:
    """The products that get per-product series: the `limit` drifted ones with the
    smallest q-values and the `limit` worst by RMSSE (else RMSE), each product once."""
    drifted = products[products["drift"].astype(bool)]
    first = drifted.sort_values(["drift_qvalue", "product_id"], kind="stable").head(limit)
    key = products["rmsse"].where(products["rmsse"].notna(), products["rmse"])
    worst = products.assign(_key=key).dropna(subset=["_key"])
    worst = worst.sort_values(["_key", "product_id"], ascending=[False, True], kind="stable")
    chosen = set(first["product_id"]) | set(worst["product_id"].head(limit))
    return products[products["product_id"].isin(chosen)]


def aggregate_points(products: Any) -> list[MetricPoint]:
    """Catalogue-wide gauges, whatever its size: products checked, and quantiles of the
    products' RMSE and RMSSE (`product_rmsse_quantile{quantile}`)."""
    points = [MetricPoint("products_checked", float(len(products)))]
    for column in ("rmse", "rmsse"):
        values = products[column].dropna()
        if len(values):
            for q, v in zip(QUANTILES, values.quantile(list(QUANTILES)).tolist(), strict=True):
                points.append(
                    MetricPoint(f"product_{column}_quantile", float(v), {"quantile": f"{q:g}"})
                )
    return points


def drift_points(products: Any, limit: int | None = TOP_PRODUCTS) -> list[MetricPoint]:
    """The drift series of a check's per-product frame (`HealthResult.products`).

    `drifted_products{kind}`: how many products drifted, one gauge a kind (0 included,
    so a chart shows the drop); `product_drift{product_id, kind}`: 1 for every drifted
    product, labelled with its kind (level, scale or shape; a label with three values
    keeps the series few), its q-value in `product_drift_qvalue{product_id, kind}`.
    Products without drift write no per-product drift point, and only the `limit`
    drifted products with the smallest q-values write one (None: every one).
    """
    drifted = products[products["drift"].astype(bool)]
    points = [
        MetricPoint("drifted_products", float((drifted["drift_kind"] == k).sum()), {"kind": k})
        for k in DRIFT_KINDS
    ]
    if limit is not None:
        drifted = drifted.sort_values(["drift_qvalue", "product_id"], kind="stable").head(limit)
    for pid, kind, q in zip(
        drifted["product_id"], drifted["drift_kind"], drifted["drift_qvalue"], strict=True
    ):
        labels = {"product_id": str(pid), "kind": str(kind)}
        points.append(MetricPoint("product_drift", 1.0, labels))
        points.append(MetricPoint("product_drift_qvalue", float(q), labels))
    return points


def make_metrics_sink(settings: Settings, client: Any = None) -> MetricsSink | None:
    """The sink `METRICS_SINK` names, or None when metrics are off (unset)."""
    target = settings.metrics_sink
    if not target:
        return None
    if target == CLOUD_MONITORING:
        if not settings.gcp_project:
            raise ConfigError("METRICS_SINK=cloud-monitoring needs GCP_PROJECT")
        return CloudMonitoringSink(settings.gcp_project, client)
    return JsonLinesSink(target)

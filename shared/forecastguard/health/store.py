"""Store a health check: one `health_checks` row and its products, in one transaction."""

from __future__ import annotations

import json
import math

import numpy as np
import sqlalchemy as sa

from forecastguard.db.schema import health_check_products, health_checks
from forecastguard.health.check import HealthResult
from forecastguard.health.episodes import record_episodes

_PRODUCT_COLUMNS = (
    "product_id",
    "n",
    "rmse",
    "mae",
    "bias",
    "rmsse",
    "ks_pvalue",
    "ks_qvalue",
    "drift_pvalue",
    "drift_qvalue",
    "bias_shift",
    "bias_shift_sd",
    "spread_ratio",
)
_TEXT_COLUMNS = ("reference", "drift_kind", "drift_test")  # None stays NULL


def store_result(
    engine: sa.Engine,
    result: HealthResult,
    event_id: str | None = None,
    *,
    products: bool = True,
) -> None:
    """Insert the check and its per-product rows atomically (all or nothing).

    `products=False` stores the summary only (a BigQuery installation keeps the
    per-product rows in BigQuery, issue 24).

    `event_id` is the Pub/Sub event that asked for the check (unique: a redelivery that
    raced the first delivery gets an IntegrityError and nothing is stored twice).

    `result_json` keeps the summary without the product list (MySQL's TEXT holds 64 KB);
    the products are the `health_check_products` rows.
    """
    if not result.check_id or result.checked_at is None:
        raise ValueError("store_result: the result needs check_id and checked_at")
    summary = result.summary()
    row = {
        "id": result.check_id,
        "checked_at": result.checked_at.replace(tzinfo=None),
        "as_of": result.as_of,
        "window_start": result.window_start,
        "window_end": result.window_end,
        "healthy": result.healthy,
        "avg_rmse": summary["avg_rmse"],
        "p_value": summary["p_value"],
        "drift_detected": result.drift_detected,
        "drifted_share": summary["drifted_share"],
        "n_products": result.n_products,
        "reasons": json.dumps(result.reasons),
        "model_versions": json.dumps(result.model_versions),
        "duration_s": float(result.duration_s),
        "result_json": json.dumps(summary, default=str),
        "event_id": event_id,
    }
    frame = result.products if products else result.products.iloc[:0]
    columns = {c: _column(frame[c].to_numpy()) for c in _PRODUCT_COLUMNS}
    columns["drift"] = frame["drift"].to_numpy(bool).tolist()
    for name in _TEXT_COLUMNS:
        columns[name] = [None if v is None or v != v else str(v) for v in frame[name].tolist()]
    names = ["health_check_id", *columns]
    rows = list(zip([result.check_id] * len(frame), *columns.values(), strict=True))
    with engine.begin() as conn:
        conn.execute(health_checks.insert(), [row])
        # Issue 23: the drift episodes of the served model (a shift stays flagged).
        record_episodes(
            conn,
            model_version=result.model_version,
            as_of=result.as_of,
            window_start=result.window_start,
            products=result.products,
        )
        if rows and products:
            # The driver's executemany directly: SQLAlchemy's per-row parameter handling
            # costs more than the insert itself for 10,000 plain rows.
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            table = conn.dialect.identifier_preparer.format_table(health_check_products)
            sql = (
                f"INSERT INTO {table} ({', '.join(names)}) "
                f"VALUES ({', '.join([mark] * len(names))})"
            )
            conn.exec_driver_sql(sql, rows)


def _column(values: np.ndarray) -> list:
    if values.dtype.kind == "f":
        return [v if math.isfinite(v) else None for v in values.tolist()]
    return values.tolist()

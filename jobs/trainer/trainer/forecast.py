"""Forecast mode: the champion's next H days for every product, upserted into `predictions`.

Idempotent: rows whose forecast and model version are already stored are left alone
(their `created_at` too), so running it twice on the same data changes nothing. "The
same forecast" allows float noise: TensorFlow on CPU (oneDNN) may differ in the last
float32 digits between processes.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.db.schema import predictions
from forecastguard.db.upsert import upsert_rows
from forecastguard.logs import get_logger, timed
from forecastguard.storage import ArtifactStore
from trainer.artifacts import ModelBundle, load_model_bundle, read_champion

log = get_logger(__name__)

SAME_RTOL = 1e-5  # float32 noise between processes, far below a unit sold
SAME_ATOL = 1e-4


class NoChampion(RuntimeError):
    """Forecast mode found no champion to forecast with."""


@dataclass(frozen=True)
class ForecastResult:
    """What forecast mode did."""

    model_version: str
    products: int
    days: int
    first_date: str
    last_date: str
    written: int
    unchanged: int

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form."""
        return dict(self.__dict__)


def write_forecasts(
    engine: sa.Engine,
    forecasts: pd.DataFrame,
    model_version: str,
    *,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Upsert (product_id, target_date, predicted_units) rows; returns (written, unchanged).

    A row already holding the same value (within `SAME_RTOL` relative or `SAME_ATOL`
    units) from the same model version is not rewritten.
    """
    missing = {"product_id", "target_date", "predicted_units"} - set(forecasts.columns)
    if missing:
        raise ValueError(f"forecast frame lacks column(s) {sorted(missing)}")
    values = forecasts["predicted_units"].to_numpy(float)
    if not np.isfinite(values).all():
        bad = forecasts.loc[~np.isfinite(values), "product_id"].unique()[:5]
        raise ValueError(f"non-finite forecasts for product(s) {list(bad)}: nothing written")
    created = (now or datetime.now(UTC)).replace(tzinfo=None)
    frame = pd.DataFrame(
        {
            "product_id": forecasts["product_id"].astype(str),
            "target_date": pd.to_datetime(forecasts["target_date"]).dt.date,
            "predicted_units": values,
        }
    )
    with engine.begin() as conn:
        stored = conn.execute(
            sa.select(
                predictions.c.product_id,
                predictions.c.target_date,
                predictions.c.predicted_units,
                predictions.c.model_version,
            ).where(
                predictions.c.target_date.between(
                    frame["target_date"].min(), frame["target_date"].max()
                ),
                predictions.c.product_id.in_(sorted(frame["product_id"].unique())),
            )
        ).all()
        old = {(p, d): (v, m) for p, d, v, m in stored}
        rows = []
        for p, d, v in zip(frame["product_id"], frame["target_date"], values, strict=True):
            prev = old.get((p, d))
            same = prev and np.isclose(prev[0], v, rtol=SAME_RTOL, atol=SAME_ATOL)
            if same and prev[1] == model_version:
                continue
            rows.append(
                {
                    "product_id": p,
                    "target_date": d,
                    "predicted_units": float(v),
                    "model_version": model_version,
                    "created_at": created,
                }
            )
        upsert_rows(conn, predictions, rows)
    return len(rows), len(frame) - len(rows)


def forecast_with(engine: sa.Engine, bundle: ModelBundle) -> ForecastResult:
    """Forecast with a loaded model bundle (bias-corrected) and write the predictions."""
    from trainer.data import load_promotions, load_sales
    from trainer.pipeline import forecast_next

    with timed(log, "stage forecast", stage="forecast", model_version=bundle.model_version) as out:
        sales = load_sales(engine)
        promos = load_promotions(engine)
        raw = forecast_next(bundle.model, bundle.pipeline, sales, bundle.cfg, bundle.params, promos)
        corrected = bundle.correction.apply(raw, column="predicted_units")
        written, unchanged = write_forecasts(engine, corrected, bundle.model_version)
        dates = pd.to_datetime(corrected["target_date"])
        result = ForecastResult(
            model_version=bundle.model_version,
            products=int(corrected["product_id"].nunique()),
            days=int(dates.nunique()),
            first_date=str(dates.min().date()),
            last_date=str(dates.max().date()),
            written=written,
            unchanged=unchanged,
        )
        out.update(result.to_dict())
    return result


def run_forecast(
    engine: sa.Engine, store: ArtifactStore, *, workdir: str | Path | None = None
) -> ForecastResult:
    """`--mode forecast`: load the champion named by champion.json and write its forecasts."""
    pointer = read_champion(store)
    if pointer is None:
        raise NoChampion(f"no champion at {store.key_uri('champion.json')}: run --mode train first")
    with tempfile.TemporaryDirectory(prefix="fg-champion-") as tmp:
        bundle = load_model_bundle(store, pointer.run_id, workdir or tmp)
        return forecast_with(engine, bundle)

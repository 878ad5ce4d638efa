"""Synthetic windows for the health-check tests and benchmark (vectorised, seeded).

Every product sells Poisson units around a level with a weekly pattern; the model
forecasts that mean with a small multiplicative error, so a healthy model's errors keep
their distribution from one window to the next. Drift multiplies the demand of some
products inside the window, which the forecasts do not know about.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.db.schema import model_residuals, predictions, sales
from forecastguard.health.window import WindowData, history_days

WEEK = np.array([0.86, 0.87, 0.85, 0.99, 1.19, 1.52, 0.72])


def synthetic_window(
    n_products: int,
    as_of: date,
    window_days: int = 30,
    *,
    seed: int = 0,
    drift_share: float = 0.0,
    drift_factor: float = 1.6,
    noise: float = 0.1,
    level_median: float = 8.0,
    model_version: str = "m1",
    history: int | None = None,
) -> WindowData:
    """A window (and its history) of `n_products` products, forecasts on every day read.

    `drift_share` of the products (the first ones) sell `drift_factor` times their usual
    demand inside the window.
    """
    rng = np.random.default_rng(seed)
    hist = history or history_days(window_days)
    n_days = hist + window_days
    start = as_of - timedelta(days=n_days - 1)
    level = np.exp(rng.normal(np.log(level_median), 0.8, n_products))
    weekday = (np.arange(n_days) + start.weekday()) % 7
    mean = level[:, None] * WEEK[weekday][None, :]
    drifted = round(drift_share * n_products)
    actual_mean = mean.copy()
    actual_mean[:drifted, hist:] *= drift_factor
    units = rng.poisson(actual_mean).astype(np.float64)
    predicted = mean * np.exp(rng.normal(0.0, noise, mean.shape))
    width = len(str(n_products))
    products = np.array([f"P{i:0{width}d}" for i in range(n_products)], dtype=object)
    return WindowData(
        as_of=as_of,
        window_days=window_days,
        history_days=hist,
        products=products,
        codes=np.repeat(np.arange(n_products, dtype=np.int64), n_days),
        day=np.tile(np.arange(n_days, dtype=np.int64), n_products),
        units=units.ravel(),
        predicted=predicted.ravel(),
        model_versions=(model_version,),
        current_version=model_version,
        last_sale_date=as_of,
    )


def frames(
    data: WindowData, model_version: str = "m1", predictions_from: date | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sales, predictions) frames of a synthetic window, as the tables hold them."""
    dates = pd.Timestamp(data.hist_start) + pd.to_timedelta(data.day, unit="D")
    sales_frame = pd.DataFrame(
        {
            "product_id": data.products[data.codes],
            "sale_date": dates.date,
            "units_sold": data.units,
        }
    )
    keep = ~np.isnan(data.predicted)
    if predictions_from is not None:
        keep &= np.asarray(dates >= pd.Timestamp(predictions_from))
    predictions_frame = pd.DataFrame(
        {
            "product_id": data.products[data.codes[keep]],
            "target_date": dates[keep].date,
            "predicted_units": data.predicted[keep],
            "model_version": model_version,
            "created_at": datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None),
        }
    )
    return sales_frame, predictions_frame


def write(
    engine: sa.Engine,
    sales_frame: pd.DataFrame,
    predictions_frame: pd.DataFrame | None = None,
    residuals_frame: pd.DataFrame | None = None,
    *,
    batch: int = 20_000,
) -> None:
    """Insert the frames into sales, predictions and model_residuals."""
    with engine.begin() as conn:
        for table, frame in (
            (sales, sales_frame),
            (predictions, predictions_frame),
            (model_residuals, residuals_frame),
        ):
            if frame is None or frame.empty:
                continue
            records = frame.to_dict("records")
            for i in range(0, len(records), batch):
                conn.execute(table.insert(), records[i : i + batch])

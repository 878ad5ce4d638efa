"""Forecasts a reasonable model would have served for synthetic sales."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastguard.synth import _random as rnd
from forecastguard.synth.sales import DateLike, _check_seed, as_day


def generate_predictions(
    sales: pd.DataFrame,
    *,
    start: DateLike | None = None,
    end: DateLike | None = None,
    seed: int = 0,
    noise: float = 0.1,
    model_version: str = "synthetic-v1",
) -> pd.DataFrame:
    """Forecasts for every product and day of `sales` from `start` to `end` (inclusive).

    A forecast is the generator's expected demand (`expected_units`, which
    `inject_drift` leaves alone: the model does not know about the drift) times a
    log-normal error: a per-product bias with sd `noise / 2` and a daily error with sd
    `noise`, scaled so the forecasts are unbiased on average. With the default product
    mix and `noise=0.1`, the average per-product RMSE is about 6-8 units, most of it from
    the high-volume products (see tests/unit/test_synth.py).

    Returns columns product_id, target_date, predicted_units (>= 0, rounded to 0.01)
    and model_version. A day's forecast does not depend on the window asked for.
    """
    if "expected_units" not in sales:
        raise ValueError(
            "sales has no expected_units column: predictions need a frame from generate_sales"
        )
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    _check_seed(seed)
    dates = pd.to_datetime(sales["date"])
    mask = np.ones(len(sales), dtype=bool)
    if start is not None:
        mask &= (dates >= as_day(start, "start")).to_numpy()
    if end is not None:
        mask &= (dates <= as_day(end, "end")).to_numpy()
    rows = sales.loc[mask]

    codes, products = pd.factorize(rows["product_id"], sort=True)
    keys = rnd.product_keys(products)[codes]
    days = rnd.day_numbers(dates[mask])
    bias = rnd.normal(rnd.uniforms(seed, "forecast-bias", keys, 0))
    daily = rnd.normal(rnd.uniforms(seed, "forecast-error", keys, days))
    sd_bias = noise / 2
    log_error = sd_bias * bias + noise * daily - (sd_bias**2 + noise**2) / 2
    predicted = rows["expected_units"].to_numpy(float) * np.exp(log_error)
    return pd.DataFrame(
        {
            "product_id": rows["product_id"].to_numpy(),
            "target_date": dates[mask].to_numpy(),
            "predicted_units": np.round(predicted, 2),
            "model_version": model_version,
        }
    )

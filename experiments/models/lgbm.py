"""LightGBM global model: one gradient-boosted model for all products and all 28 steps.

The family that won the M5 competition, used as the strong reference. Direct strategy:
each training row is (product, origin, step) with the trainer's features
(`experiments.features`), the target is the standardised units `step` days after the
origin, and the forecast uses only the cutoff as origin, so no forecast is fed back in.
Training origins are every `origin_stride` days over the last `train_days` of history
(a stride prime to 7, so every weekday is an origin); rows whose target day has no
record are left out. Fixed hyper-parameters, no tuning on the test windows.
`last_year=True` (the default) adds the trainer's `last_year` known feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from experiments.features import (
    CATEGORICAL,
    LAGS,
    Standardiser,
    daily_features,
    direct_rows,
    feature_names,
)
from experiments.models.base import Forecast, ForecastTask

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.07,
    "num_leaves": 63,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
}


@dataclass
class LightGBMGlobal:
    """A direct multi-horizon LightGBM on the trainer's features."""

    train_days: int = 728
    origin_stride: int = 5
    num_boost_round: int = 300
    num_threads: int = 2
    seed: int = 0
    holiday_country: str = "IT"
    last_year: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    name: str = "lightgbm"

    def forecast(self, task: ForecastTask) -> Forecast:
        """Train on the history's (origin, step) rows; forecast from the cutoff."""
        import lightgbm as lgb

        hist = task.history
        horizon = task.horizon
        t_hist, n = hist.units.shape
        scaler = Standardiser.fit(hist.units)
        units = np.vstack([hist.units, np.full((horizon, n), np.nan)])
        promo = np.vstack([hist.promo, task.future_promo])
        dates = hist.dates.append(task.future_dates)
        feats = daily_features(units, promo, dates, scaler, self.holiday_country)

        first_origin = max(max(LAGS), t_hist - self.train_days)
        last_origin = t_hist - 1 - horizon
        origin_days = np.arange(last_origin, first_origin - 1, -self.origin_stride)
        if origin_days.size == 0:
            raise ValueError(f"history of {t_hist} days is too short for LightGBM")
        o, h, p = (
            a.reshape(-1)
            for a in np.meshgrid(
                origin_days, np.arange(1, horizon + 1), np.arange(n), indexing="ij"
            )
        )
        keep = hist.observed[o + h, p]
        o, h, p = o[keep], h[keep], p[keep]
        names = feature_names(self.last_year)
        x = direct_rows(feats, o, h, p, last_year=self.last_year)
        y = feats.z[o + h, p]
        params = {
            **DEFAULT_PARAMS,
            "num_threads": self.num_threads,
            "seed": self.seed,
            **self.params,
        }
        data = lgb.Dataset(
            pd.DataFrame(x, columns=names).astype({"product": int}),
            label=y,
            categorical_feature=list(CATEGORICAL),
            free_raw_data=True,
        )
        booster = lgb.train(params, data, num_boost_round=self.num_boost_round)

        fo = np.full(horizon * n, t_hist - 1)
        fh = np.repeat(np.arange(1, horizon + 1), n)
        fp = np.tile(np.arange(n), horizon)
        xf = pd.DataFrame(
            direct_rows(feats, fo, fh, fp, last_year=self.last_year), columns=names
        ).astype({"product": int})
        z = booster.predict(xf).reshape(horizon, n)
        importance = dict(
            zip(names, booster.feature_importance("gain").round(1).tolist(), strict=True)
        )
        top = sorted(importance, key=importance.__getitem__, reverse=True)[:5]
        return Forecast(
            values=scaler.inverse(z),
            notes={"train_rows": len(y), "top_features": top},
        )

"""LightGBM global model: one gradient-boosted model for all products and all 28 steps.

The family that won the M5 competition, used as the strong reference ("LightGBM
alone"). It is built from the trainer's own feature code, not a copy of it:

- `trainer.data.quality.check_quality` cleans the history (closures and gap days as 0 sales);
- `trainer.data.features.build_panel` puts it on one calendar that runs to the last forecast
  day, with the horizon's planned promotions (`ForecastTask.future_promo`);
- `trainer.data.features.FeaturePipeline`, fitted on every history day, gives the sequence
  and known-in-advance features (lags, rolling statistics, calendar, holidays,
  promotion, `last_year`);
- `trainer.data.windowing.make_windows` slices them into (origin, 28 steps) windows and
  `trainer.models.gbm.rows` lays each window out as one row per step, as the trainer's own
  LightGBM does; the target is the step's standardised units.

Unlike the trainer's LightGBM (`trainer.models.gbm.train_gbm`, the backtest's
`trainer_lightgbm`), nothing is held out: the model trains on windows over ALL history
up to the cutoff (origins every `origin_stride` days over the last `train_days`, a
stride prime to 7 so every weekday is an origin), with fixed hyper-parameters and a
fixed number of rounds, and forecasts the horizon from the cutoff (direct strategy: no
forecast is fed back in). `last_year=False` drops the `known_last_year` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from experiments.models.base import Forecast, ForecastTask, seasonal_naive_values

if TYPE_CHECKING:
    from trainer.models.quantile import DirectRows, Recipe

DEFAULT_PARAMS: dict[str, Any] = {"learning_rate": 0.07}  # over `trainer.models.gbm.PARAMS`
LAST_YEAR_COLUMN = "known_last_year"


def future_promotions(task: ForecastTask) -> pd.DataFrame:
    """The horizon's planned promotions as (product_id, date) rows."""
    products = np.array(task.history.products, dtype=object)
    frame = pd.DataFrame(
        {
            "product_id": np.tile(products, task.horizon),
            "date": np.repeat(task.future_dates.to_numpy(), len(products)),
            "promo": np.asarray(task.future_promo).reshape(-1),
        }
    )
    return frame.loc[frame["promo"] > 0, ["product_id", "date"]].reset_index(drop=True)


def direct_rows(
    task: ForecastTask,
    *,
    train_days: int,
    origin_stride: int,
    holiday_country: str = "IT",
    last_year: bool = True,
) -> DirectRows:
    """`trainer.models.quantile.direct_rows` of `task`: training windows end by the cutoff
    (every target day a history day); the forecast window of each product listed on the
    cutoff starts the day after it."""
    from trainer.config import TrainConfig
    from trainer.models.quantile import direct_rows as rows_of

    return rows_of(
        task.history.to_long(),
        TrainConfig(horizon=task.horizon, holiday_country=holiday_country),
        train_days=train_days,
        origin_stride=origin_stride,
        promotions=future_promotions(task),
        drop=() if last_year else (LAST_YEAR_COLUMN,),
    )


def _wide(
    task: ForecastTask, products: list[str], quantiles: dict[float, np.ndarray]
) -> dict[float, np.ndarray]:
    """`{level: (H, N)}` forecasts of every history product: `quantiles`' (M, H) of
    `products`, the seasonal naive (clipped at 0) for the products without a forecast
    window; never crossing."""
    from trainer.models.quantile import uncrossed

    fallback = np.clip(seasonal_naive_values(task.history.filled, task.horizon), 0.0, None)
    column = {p: j for j, p in enumerate(task.history.products)}
    cols = [column[p] for p in products]
    out = {}
    for a, units in quantiles.items():
        out[a] = fallback.copy()
        out[a][:, cols] = units.T
    return uncrossed(out)


@dataclass
class LightGBMGlobal:
    """A direct multi-horizon LightGBM on the trainer's features, trained on all history."""

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
        """Train on the history's windows; forecast the horizon from the cutoff."""
        import lightgbm as lgb

        from trainer.models.gbm import PARAMS

        d = direct_rows(
            task,
            train_days=self.train_days,
            origin_stride=self.origin_stride,
            holiday_country=self.holiday_country,
            last_year=self.last_year,
        )
        params = {
            **PARAMS,
            **DEFAULT_PARAMS,
            "num_threads": self.num_threads,
            "seed": self.seed,
            **self.params,
        }
        data = lgb.Dataset(
            d.x,
            label=d.y,
            feature_name=d.names,
            categorical_feature=["product"],
            free_raw_data=True,
        )
        booster = lgb.train(params, data, num_boost_round=self.num_boost_round)
        z = np.asarray(booster.predict(d.x_future), dtype=float).reshape(len(d.products), -1)
        units = d.pipeline.inverse_target(z, d.products)  # (M, H)

        values = seasonal_naive_values(task.history.filled, task.horizon)
        column = {p: j for j, p in enumerate(task.history.products)}
        values[:, [column[p] for p in d.products]] = units.T
        importance = dict(
            zip(d.names, booster.feature_importance("gain").round(1).tolist(), strict=True)
        )
        top = sorted(importance, key=importance.__getitem__, reverse=True)[:5]
        notes: dict[str, Any] = {"train_rows": len(d.y), "top_features": top}
        if len(d.products) < len(task.history.products):
            notes["fallbacks"] = len(task.history.products) - len(d.products)
        return Forecast(values=np.clip(values, 0.0, None), notes=notes)


@dataclass
class LightGBMQuantile:
    """The quantile-LightGBM reference: `LightGBMGlobal`'s recipe with LightGBM's quantile
    objective, one booster per level (P10, P50, P90; the point forecast is P50).

    With `conformal`, the same fit also gives `lightgbm_cqr`, conformalised quantile
    regression (Romano et al. 2019): boosters trained on the history up to `horizon`
    days before the cutoff forecast those last days; the conformity scores
    `max(q_lo − y, y − q_hi)` per horizon band (1–7, 8–14, 15–H, products pooled)
    give the band's widening `Q` (split-conformal quantile at the interval's level), and
    the reference's interval becomes `[q_lo − Q, q_hi + Q]`.
    """

    train_days: int = 728
    # windows every 10 days, not 5: the quantile objective re-fits every leaf's output
    # as a quantile of its rows, several times slower than `LightGBMGlobal`'s L2
    origin_stride: int = 10
    num_boost_round: int = 300
    num_threads: int = 2
    seed: int = 0
    holiday_country: str = "IT"
    levels: tuple[float, ...] = (0.1, 0.5, 0.9)
    conformal: bool = True
    # over `PARAMS` and `DEFAULT_PARAMS` (not the objective, level, threads or seed)
    params: dict[str, Any] = field(default_factory=dict)
    name: str = "lightgbm_quantile"

    def recipe(self) -> Recipe:
        """The boosters' recipe (`trainer.models.quantile.Recipe`)."""
        from trainer.models.quantile import Recipe

        return Recipe(
            params={**DEFAULT_PARAMS, **self.params},
            rounds=self.num_boost_round,
            train_days=self.train_days,
            origin_stride=self.origin_stride,
            num_threads=self.num_threads,
            seed=self.seed,
        )

    def _quantiles(self, task: ForecastTask, levels: tuple[float, ...]) -> dict[float, np.ndarray]:
        from trainer.models.quantile import fit_boosters, predict_quantiles

        d = direct_rows(
            task,
            train_days=self.train_days,
            origin_stride=self.origin_stride,
            holiday_country=self.holiday_country,
        )
        boosters = fit_boosters(d, levels, self.recipe())
        return _wide(
            task, d.products, predict_quantiles(boosters, d.x_future, d.pipeline, d.products)
        )

    def forecast(self, task: ForecastTask) -> Forecast:
        """Quantile boosters on the history; with `conformal`, the CQR extra
        (`trainer.models.quantile.fit_quantile_model`: what the trainer serves)."""
        from trainer.config import TrainConfig
        from trainer.models.intervals import band_index
        from trainer.models.quantile import BAND_STARTS, fit_quantile_model

        model = fit_quantile_model(
            task.history.to_long(),
            TrainConfig(horizon=task.horizon, holiday_country=self.holiday_country),
            promotions=future_promotions(task),
            levels=self.levels,
            conformal=self.conformal,
            recipe=self.recipe(),
        )
        q = _wide(task, model.products, model.future)
        lo, hi = min(self.levels), max(self.levels)
        notes: dict[str, Any] = {}
        extra: dict[str, np.ndarray] = {}
        extra_q: dict[str, dict[float, np.ndarray]] = {}
        if model.widening:
            steps = np.arange(1, task.horizon + 1)
            widen = np.asarray(model.widening)[band_index(steps, BAND_STARTS)]
            notes["cqr_widening"] = [round(float(w), 3) for w in np.unique(widen)]
            extra["lightgbm_cqr"] = q[0.5] if 0.5 in q else (q[lo] + q[hi]) / 2
            extra_q["lightgbm_cqr"] = {
                lo: np.clip(q[lo] - widen[:, None], 0.0, None),
                **({0.5: q[0.5]} if 0.5 in q else {}),
                hi: q[hi] + widen[:, None],
            }
        point = q[0.5] if 0.5 in q else (q[lo] + q[hi]) / 2
        return Forecast(
            values=point, quantiles=q, notes=notes, extra=extra, extra_quantiles=extra_q
        )

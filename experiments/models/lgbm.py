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
from typing import Any

import numpy as np
import pandas as pd

from experiments.models.base import Forecast, ForecastTask, seasonal_naive_values

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


@dataclass(frozen=True)
class DirectRows:
    """The trainer's LightGBM rows of one task: training rows and the forecast rows."""

    names: list[str]
    x: np.ndarray  # (R, F) training rows
    y: np.ndarray  # (R,) standardised units of each row's target day
    x_future: np.ndarray  # (M * H, F) rows of the forecast window of each of M products
    products: list[str]  # (M,) the forecast windows' products
    pipeline: Any  # trainer.data.features.FeaturePipeline (inverts the standardisation)


def direct_rows(
    task: ForecastTask,
    *,
    train_days: int,
    origin_stride: int,
    holiday_country: str = "IT",
    last_year: bool = True,
) -> DirectRows:
    """Rows of `task` from the trainer's feature code (see the module docstring).

    Training windows end by the cutoff (every target day is a history day); the
    forecast window of each product listed on the cutoff starts the day after it.
    """
    from trainer.config import TrainConfig
    from trainer.data.features import FeaturePipeline, build_panel
    from trainer.data.quality import check_quality
    from trainer.data.windowing import make_windows, origins_every
    from trainer.models.gbm import row_names, rows

    horizon = task.horizon
    cfg = TrainConfig(horizon=horizon, holiday_country=holiday_country)
    clean = check_quality(task.history.to_long(), cfg).clean
    panel = build_panel(clean, end=task.future_dates[-1], promotions=future_promotions(task))
    n_hist = int(panel.calendar.get_loc(task.future_dates[0]))
    pipe = FeaturePipeline.fit(panel, n_hist, holiday_country)
    arrays = pipe.transform(panel)

    lookback = cfg.lookback
    origins = origins_every(max(lookback, n_hist - train_days), n_hist, origin_stride, horizon)
    train = make_windows(arrays, origins, lookback, horizon, synthetic=panel.synthetic)
    if not len(train):
        raise ValueError(f"history of {n_hist} days is too short for LightGBM")
    future = make_windows(arrays, np.array([n_hist]), lookback, horizon, require_targets=False)

    def stats(series: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
        ids = [panel.product_ids[s] for s in series]
        mean, std = pipe.series_stats(ids)
        return ids, mean, std

    names = row_names(pipe.feature_names, (*pipe.known_names, "horizon_step"))
    _, tmean, tstd = stats(train.series)
    x = rows(train, tmean, tstd)
    y = (train.y + train.level[:, None]).reshape(-1)
    products, fmean, fstd = stats(future.series)
    xf = rows(future, fmean, fstd)
    if not last_year:
        col = names.index(LAST_YEAR_COLUMN)
        names = [n for n in names if n != LAST_YEAR_COLUMN]
        x, xf = np.delete(x, col, axis=1), np.delete(xf, col, axis=1)
    return DirectRows(names, x, y, xf, products, pipe)


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


def _conformal_rank(n: int, level: float) -> int:
    return min(n, int(np.ceil((n + 1) * level)))


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

    def _quantiles(self, task: ForecastTask, levels: tuple[float, ...]) -> dict[float, np.ndarray]:
        import lightgbm as lgb

        from trainer.models.gbm import PARAMS

        d = direct_rows(
            task,
            train_days=self.train_days,
            origin_stride=self.origin_stride,
            holiday_country=self.holiday_country,
        )
        data = lgb.Dataset(
            d.x, label=d.y, feature_name=d.names, categorical_feature=["product"]
        ).construct()
        column = {p: j for j, p in enumerate(task.history.products)}
        cols = [column[p] for p in d.products]
        fallback = np.clip(seasonal_naive_values(task.history.filled, task.horizon), 0.0, None)
        out = {}
        for a in levels:
            params = {
                **PARAMS,
                **DEFAULT_PARAMS,
                **self.params,
                "objective": "quantile",
                "alpha": a,
                "num_threads": self.num_threads,
                "seed": self.seed,
            }
            booster = lgb.train(params, data, num_boost_round=self.num_boost_round)
            z = np.asarray(booster.predict(d.x_future), dtype=float).reshape(len(d.products), -1)
            values = fallback.copy()
            values[:, cols] = d.pipeline.inverse_target(z, d.products).T
            out[a] = values
        # quantiles never cross
        stacked = np.maximum.accumulate(np.stack([out[a] for a in levels]), axis=0)
        return {a: stacked[i] for i, a in enumerate(levels)}

    def forecast(self, task: ForecastTask) -> Forecast:
        """Quantile boosters on the history; with `conformal`, the CQR extra."""
        from experiments.models.base import ForecastTask as Task

        q = self._quantiles(task, self.levels)
        lo, hi = min(self.levels), max(self.levels)
        notes: dict[str, Any] = {}
        extra: dict[str, np.ndarray] = {}
        extra_q: dict[str, dict[float, np.ndarray]] = {}
        h = task.horizon
        t = len(task.history.dates)
        if self.conformal and t - h > 3 * h:
            past = Task(
                history=task.history.upto(t - h),
                future_dates=task.history.dates[t - h :],
                future_promo=task.history.promo[t - h :],
            )
            qc = self._quantiles(past, (lo, hi))
            y = task.history.units[t - h :]  # NaN: no record
            score = np.maximum(qc[lo] - y, y - qc[hi])
            bands = np.searchsorted(np.array([1, 8, 15]), np.arange(1, h + 1), side="right") - 1
            widen = np.zeros(h)
            for b in np.unique(bands):
                s = score[bands == b]
                s = np.sort(s[np.isfinite(s)])
                if s.size:
                    widen[bands == b] = s[_conformal_rank(s.size, hi - lo) - 1]
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

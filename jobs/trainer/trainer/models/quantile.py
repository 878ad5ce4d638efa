"""The LightGBM kinds' forecast quantiles: conformalised quantile regression (issue 27).

One LightGBM quantile booster per level (P10, P50, P90) on the trainer's features, with
the point model's recipe (`trainer.models.gbm.PARAMS`, learning rate 0.07, 300 rounds)
and the quantile objective, trained on windows over the last `TRAIN_DAYS` days of ALL
the sales (origins every `ORIGIN_STRIDE` days, a stride prime to 7 so every weekday is
an origin; nothing held out) with a feature pipeline of its own, fitted on every day.

Conformalised (Romano et al. 2019, split conformal in time): the outer levels' boosters
are trained again on the sales up to `horizon` days before the end and forecast those
last days, which they did not train on; per horizon band (1–7, 8–14, 15–H, products
pooled) the conformal quantile `Q` of the scores `max(q_lo − y, y − q_hi)` at the
interval's level widens the served interval to `[q_lo − Q, q_hi + Q]` (clipped at 0).
The P50 is its booster's, unmoved.

This is the backtest's quantile-LightGBM reference and its CQR (`experiments.models.lgbm`
calls `fit_quantile_model`, so the two cannot drift apart). Over 26 pasta cutoffs its
CQR was at or below the reference's WSPL at 25, with coverage 0.799 and a per-product
10th percentile of 0.655, where every earlier method of the trainer's (residual
quantiles, tails on a member's rows) was level with the reference only about half the
time: docs/trainer.md, "the ninth pass".

`heldout_frame` gives the promotion guard an honest figure: the held-out boosters'
forecasts of the last `horizon` days, each half of the products widened by the
conformal quantile of the other half's scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger, timed
from trainer.models.intervals import (
    DEFAULT_BAND_STARTS,
    band_index,
    column_name,
    conformal_quantile,
)

if TYPE_CHECKING:
    import lightgbm as lgb

    from trainer.config import TrainConfig
    from trainer.data.features import FeaturePipeline
    from trainer.models.intervals import IntervalCalibration

log = get_logger(__name__)

PARAMS: dict[str, Any] = {"learning_rate": 0.07}  # over `trainer.models.gbm.PARAMS`
ROUNDS = 300
TRAIN_DAYS = 728
# windows every 10 days, not the point model's 2: the quantile objective re-fits every
# leaf's output as a quantile of its rows, several times slower than squared error
ORIGIN_STRIDE = 10
# at most this many training rows (windows x horizon): each product keeps the same
# number of windows at evenly spaced origins beyond it (`windowing.budget_mask`, chosen
# before any window is gathered). The pasta data's 234,584 rows are all kept; 10,000
# products keep 3 windows each.
MAX_ROWS = 1_000_000
LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9)
BAND_STARTS: tuple[int, ...] = DEFAULT_BAND_STARTS  # the residual calibration's bands


@dataclass(frozen=True)
class DirectRows:
    """LightGBM rows of a history: training rows and the rows that forecast its horizon."""

    names: list[str]
    x: np.ndarray  # (R, F) training rows
    y: np.ndarray  # (R,) standardised units of each row's target day
    x_future: np.ndarray  # (M * H, F) rows of the forecast window of each of M products
    products: list[str]  # (M,) the forecast windows' products
    dates: pd.DatetimeIndex  # (H,) the forecast days
    pipeline: FeaturePipeline  # fitted on every history day (inverts the standardisation)


def direct_rows(
    sales: pd.DataFrame,
    cfg: TrainConfig,
    *,
    train_days: int = TRAIN_DAYS,
    origin_stride: int = ORIGIN_STRIDE,
    promotions: pd.DataFrame | None = None,
    drop: tuple[str, ...] = (),
    max_rows: int = MAX_ROWS,
) -> DirectRows:
    """Rows of the long `sales` from the trainer's feature code: windows whose origins
    lie every `origin_stride` days within the last `train_days` days (every target day a
    sales day), and the forecast window of each product listed on the last sales day,
    which forecasts the `cfg.horizon` days after it (`promotions`: their planned
    promotions, product_id and date). `drop`: feature columns left out; `max_rows` (0:
    no limit) caps the training rows (`MAX_ROWS`)."""
    from trainer.data.features import FeaturePipeline, build_panel
    from trainer.data.quality import check_quality
    from trainer.data.windowing import make_windows, origins_every
    from trainer.models.gbm import row_names, rows

    horizon, lookback = cfg.horizon, cfg.lookback
    clean = check_quality(sales, cfg).clean
    end = clean["date"].max() + pd.Timedelta(days=horizon)
    panel = build_panel(clean, end=end, promotions=promotions)
    n_hist = len(panel.calendar) - horizon
    pipe = FeaturePipeline.fit(panel, n_hist, cfg.holiday_country)
    arrays = pipe.transform(panel)
    origins = origins_every(max(lookback, n_hist - train_days), n_hist, origin_stride, horizon)
    train = make_windows(
        arrays,
        origins,
        lookback,
        horizon,
        synthetic=panel.synthetic,
        max_windows=max(1, max_rows // horizon) if max_rows else 0,
    )
    if not len(train):
        raise ValueError(
            f"no training window for the quantile boosters: {n_hist} days of history, "
            f"{len(panel.product_ids)} products, at most {max_rows} rows"
        )
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
    if drop:
        cols = [names.index(c) for c in drop]
        names = [n for n in names if n not in drop]
        x, xf = np.delete(x, cols, axis=1), np.delete(xf, cols, axis=1)
    return DirectRows(names, x, y, xf, products, panel.calendar[n_hist:], pipe)


@dataclass(frozen=True)
class Recipe:
    """How the quantile boosters are trained (the defaults: the served recipe)."""

    params: Mapping[str, Any] = field(default_factory=lambda: dict(PARAMS))  # over gbm.PARAMS
    rounds: int = ROUNDS
    train_days: int = TRAIN_DAYS
    origin_stride: int = ORIGIN_STRIDE
    num_threads: int = 2
    seed: int = 0


def booster_params(level: float, recipe: Recipe) -> dict[str, Any]:
    """The quantile booster's LightGBM parameters at `level` (not its objective, level,
    threads or seed from `recipe.params`)."""
    from trainer.models.gbm import PARAMS as POINT_PARAMS

    return {
        **POINT_PARAMS,
        **recipe.params,
        "objective": "quantile",
        "alpha": float(level),
        "num_threads": recipe.num_threads,
        "seed": recipe.seed,
    }


def fit_boosters(
    d: DirectRows, levels: tuple[float, ...], recipe: Recipe, what: str = "served"
) -> dict[float, lgb.Booster]:
    """One quantile booster per level on `d`'s training rows (one binned `Dataset`)."""
    import lightgbm as lgb

    data = lgb.Dataset(
        d.x, label=d.y, feature_name=d.names, categorical_feature=["product"]
    ).construct()
    out = {}
    for a in levels:
        with timed(log, "stage quantile booster", stage="quantile", level=a, fit=what) as o:
            out[float(a)] = lgb.train(
                booster_params(a, recipe), data, num_boost_round=recipe.rounds
            )
            o.update(rows=len(d.y), rounds=recipe.rounds)
    return out


def predict_quantiles(
    boosters: dict[float, lgb.Booster],
    x: np.ndarray,
    pipeline: FeaturePipeline,
    products: list[str],
) -> dict[float, np.ndarray]:
    """`{level: (M, H) units}` of rows `x` (M windows of `products`); never crossing."""
    return uncrossed(
        {
            a: pipeline.inverse_target(
                np.asarray(b.predict(x), dtype=float).reshape(len(products), -1), products
            )
            for a, b in boosters.items()
        }
    )


def uncrossed(values: Mapping[float, np.ndarray]) -> dict[float, np.ndarray]:
    """`{level: array}` made non-decreasing in the level, element by element (quantiles
    never cross), levels ascending."""
    levels = sorted(values)
    stacked = np.maximum.accumulate(np.stack([values[a] for a in levels]), axis=0)
    return {a: stacked[i] for i, a in enumerate(levels)}


def widening(score: np.ndarray, step: np.ndarray, coverage: float, n_bands: int) -> np.ndarray:
    """Per band, the conformal quantile at `coverage` of the finite `score`s of its rows
    (`intervals.conformal_quantile`; 0 for a band without any)."""
    bands = band_index(step, BAND_STARTS)
    ok = np.isfinite(score)
    return np.array(
        [conformal_quantile(score[ok & (bands == b)], coverage) for b in range(n_bands)]
    )


@dataclass
class QuantileModel:
    """The quantile boosters served, their feature pipeline and the conformal widening."""

    boosters: dict[float, lgb.Booster]
    pipeline: FeaturePipeline
    widening: tuple[float, ...]  # per band of `BAND_STARTS`; () without conformalising
    future: dict[float, np.ndarray]  # level -> (M, H) forecasts of the fit's horizon
    products: list[str]  # (M,) their products
    dates: pd.DatetimeIndex  # (H,) their days
    heldout: pd.DataFrame | None = None  # `heldout_frame`'s rows (None: not conformalised)

    @property
    def levels(self) -> tuple[float, ...]:
        """The boosters' levels, ascending."""
        return tuple(sorted(self.boosters))

    def calibration(self, residual: IntervalCalibration) -> IntervalCalibration:
        """`residual` (a kind's residual calibration: it keeps serving rows without a
        quantile, and rounds P50 for its whole-unit products) serving these boosters'
        quantiles, shifted by the widening: nothing else moves them (no floor, no
        mixing with the point, no per-product offsets)."""
        from dataclasses import replace

        if tuple(residual.band_starts) != BAND_STARTS:
            raise ValueError(f"bands {residual.band_starts} are not the widening's {BAND_STARTS}")
        if set(self.levels) != set(residual.levels):
            raise ValueError(f"levels {self.levels} are not the calibration's {residual.levels}")
        return replace(
            residual,
            tail_levels=self.levels,
            tail_shifts=self.shifts(),
            tail_scale="band",
            tail_offsets={},
            tail_use={},
            tail_floor=0.0,
            median_point=0.0,
        )

    def shifts(self) -> tuple[tuple[float, ...], ...]:
        """Per band, each level's additive shift: −Q below the median, +Q above, 0 at it
        (the form of `IntervalCalibration.tail_shifts`)."""
        return tuple(
            tuple(-q if a < 0.5 else (q if a > 0.5 else 0.0) for a in self.levels)
            for q in (self.widening or (0.0,) * len(BAND_STARTS))
        )


def _promoted(sales: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """(product_id, date) of `sales`' promoted rows on `days`."""
    on = sales["date"].isin(days) & (pd.to_numeric(sales.get("on_promotion", 0)) > 0)
    return sales.loc[on, ["product_id", "date"]].reset_index(drop=True)


def fit_quantile_model(
    sales: pd.DataFrame,
    cfg: TrainConfig,
    *,
    promotions: pd.DataFrame | None = None,
    levels: tuple[float, ...] = LEVELS,
    conformal: bool = True,
    recipe: Recipe | None = None,
) -> QuantileModel:
    """Quantile boosters on the long `sales` (product_id, date, units_sold, on_promotion)
    and, with `conformal`, their conformal widening (the module docstring). `promotions`:
    the planned promotions of the `cfg.horizon` days after the sales (the `future`
    forecasts' inputs)."""
    recipe = recipe or Recipe()
    rows_of = {"train_days": recipe.train_days, "origin_stride": recipe.origin_stride}
    sales = sales.assign(date=pd.to_datetime(sales["date"]))
    d = direct_rows(sales, cfg, promotions=promotions, **rows_of)
    boosters = fit_boosters(d, levels, recipe)
    future = predict_quantiles(boosters, d.x_future, d.pipeline, d.products)
    model = QuantileModel(boosters, d.pipeline, (), future, d.products, d.dates)
    days = pd.DatetimeIndex(sorted(sales["date"].unique()))
    h = cfg.horizon
    lo, hi = min(levels), max(levels)
    if not conformal or len(days) - h <= 3 * h or not lo < 0.5 < hi:
        return model
    last = days[-h:]
    past_sales = sales[sales["date"] < last[0]]
    past = direct_rows(past_sales, cfg, promotions=_promoted(sales, last), **rows_of)
    # the outer pair alone (a held-out P50 would only complete the guard's band, at a
    # sixth of the model's cost: docs/trainer.md, the ninth pass)
    pair = fit_boosters(past, (lo, hi), recipe, "conformal")
    q = predict_quantiles(pair, past.x_future, past.pipeline, past.products)
    actual = (
        sales[sales["date"].isin(past.dates)]
        .pivot_table(index="date", columns="product_id", values="units_sold", aggfunc="sum")
        .reindex(index=past.dates, columns=past.products)
        .to_numpy(dtype=float)
        .T
    )  # (M, H); NaN: no record
    frame = pd.DataFrame(
        {
            "product_id": np.repeat(np.array(past.products, dtype=object), h),
            "target_date": np.tile(past.dates.to_numpy(), len(past.products)),
            "horizon_step": np.tile(np.arange(1, h + 1), len(past.products)),
            "actual": actual.reshape(-1),
            "q_lo": q[lo].reshape(-1),
            "q_hi": q[hi].reshape(-1),
        }
    )
    frame["score"] = np.maximum(frame["q_lo"] - frame["actual"], frame["actual"] - frame["q_hi"])
    coverage = hi - lo
    step, score = frame["horizon_step"].to_numpy(), frame["score"].to_numpy()
    model.widening = tuple(float(w) for w in widening(score, step, coverage, len(BAND_STARTS)))
    model.heldout = heldout_frame(frame, coverage, column_name(lo), column_name(hi))
    log.info(
        "quantile model conformalised",
        extra={"widening": [round(w, 3) for w in model.widening], "rows": len(frame)},
    )
    return model


def heldout_frame(
    frame: pd.DataFrame, coverage: float, lower: str = "p10", upper: str = "p90"
) -> pd.DataFrame:
    """The held-out pair's interval on the last days (`frame`: `q_lo`, `q_hi`, `score`),
    out of sample twice over: each half of the products (alternate ones in sorted order)
    widened by the conformal quantile of the other half's scores (product_id,
    target_date, horizon_step, actual, and the bounds `lower` and `upper`: the columns
    `intervals.coverage_summary` reads)."""
    products = np.array(sorted(frame["product_id"].astype(str).unique()), dtype=object)
    half = pd.Series(np.arange(len(products)) % 2, index=products)
    side = half.reindex(frame["product_id"].astype(str)).to_numpy()
    step, score = frame["horizon_step"].to_numpy(), frame["score"].to_numpy()
    widen = np.zeros(len(frame))
    for k in (0, 1):
        other = side != k
        w = widening(np.where(other, score, np.nan), step, coverage, len(BAND_STARTS))
        widen[side == k] = w[band_index(step[side == k], BAND_STARTS)]
    lo = np.clip(frame["q_lo"].to_numpy(dtype=float) - widen, 0.0, None)
    hi = np.maximum(frame["q_hi"].to_numpy(dtype=float) + widen, lo)
    out = frame[["product_id", "target_date", "horizon_step", "actual"]].copy()
    return out.assign(**{lower: lo, upper: hi})

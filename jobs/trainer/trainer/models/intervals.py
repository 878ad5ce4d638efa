"""Forecast intervals: split-conformal quantiles of out-of-sample residuals.

A calibration is fitted on forecasts of days the model did not train on (the validation
windows of the held-out model) and turns any point forecast of the same forecaster into
quantiles (default P10/P50/P90):

1. **Each product's noise scale**, shrunk toward its group where data is thin, and
   **scaled with the forecast's level**. Count errors grow with the level sold (a
   product's September sells twice its August), so each residual `e = actual -
   predicted` is first divided by the level factor
   `g = ((max(point, 0) + c) / (m_p + c))^γ` (`m_p` the product's mean calibration
   point, `c` = 1 unit, `γ` = `level_power`; γ = 0 turns it off), and at serving time
   the scale is multiplied by the same factor of the served point. The raw
   scale is the RMS of the product's level-adjusted residuals over its `n`
   distinct target days. Its prior is the group's ratio of residual scale to the
   product's own naive scale (the RMSSE denominator from the long training history),
   times that naive scale, so a product that sells 2 a day and one that sells 50 share
   a *relative* prior, not an absolute one:
   `s_p² = (n·ŝ_p² + k·(c_g·naive_p)²) / (n + k)`, `c_g` the median of `ŝ/naive` in
   the group, `k` = `TrainConfig.interval_shrinkage` pseudo-days.
2. **Per horizon band** (steps 1–7, 8–14, 15–H): the standardised residuals `e / (g·s_p)`
   of every product are pooled, and their empirical quantiles at the levels, with the
   split-conformal finite-sample correction (`ceil((n+1)·α)/n` above the median,
   `floor((n+1)·α)/n` below), are the band's quantiles `q_b(α)`.
3. **A point mass at zero** (`zero_mass`): sales are never negative and many products
   sell nothing on some days (the pasta data: a quarter of all product-days), so a
   lower quantile at a level `α` below the day's chance of no sale `p0` is 0 — one
   shared error shape cannot put an intermittent product's P10 there. `p0` is a
   logistic regression pooled over the calibration rows,
   `logit p0 = b0 + b1·logit(π_p) + b2·log((max(point, 0) + 1) / (m_p + 1))`, `π_p` the
   share of the product's distinct calibration days with zero sales (clipped to
   [0.01, 0.99]): a product's zero share, less on days forecast above its usual level.
   Unconditionally (`π_p` alone) the rule set P10 to 0 on a big seller's busy days too
   and lost more pinball loss at P10 than it gained.
4. **Apply**: `Q_α = max(0, point + g·s_p·q_b(α))`, 0 for the levels `α < 0.5` with
   `α < p0`, never crossing. A product the calibration has not seen gets the group's
   median scale, no level factor and no zero mass.

5. **Quantile tails** (conformalised quantile regression, Romano et al. 2019, one level at a
   time): where the forecast frame carries a tail forecast `tail_p10`/`tail_p50`/`tail_p90`
   (the LightGBM kinds' quantile boosters: since issue 27's ninth pass the quantile
   model's, `trainer.models.quantile`, whose calibration `QuantileModel.calibration`
   makes: its conformal widening as the shifts, nothing else; from the fifth pass to the
   eighth the member tails, `trainer.models.gbm.TAIL_LEVELS`, where the blend gets
   LightGBM's tails as they are, its median tail mixed half-and-half with its own point,
   `BLEND_MEDIAN_POINT`), that level is the tail plus its band's shift `s_b(α)` —
   for the member tails the split-conformal quantile at `α` of `actual - tail`
   on the calibration rows: `Q_α = max(0, tail + s_b(α))`; a lower tail under
   `tail_floor` units (0.01) is served as 0 (counts: a P10 a hair above 0 misses every
   day without a sale). The zero mass and the scale do not touch such a level; the
   other levels stay as above. Measured and not served (`fit_intervals` options, off):
   the score in units of the product's scale or the tails' width (`tail_scale`),
   per-product offsets (`tail_shrinkage`), a per-level or per-product choice of tail or
   residual quantile (`tail_choice`), P50 moved toward the point (`median_point_grid`).
6. **A whole-number median** (`whole_median`, served since issue 27's eighth pass): a
   product whose calibration sales are all whole numbers (counts) gets its P50 rounded
   half up to whole units. The median of a count is a whole number, and between two
   whole numbers a count's pinball loss is linear, so a P50 inside the segment scores no
   better than its better end. Only the P50: no day moves in or out of the 10–90
   interval, so coverage is unchanged (a P10 rounded down and a P90 rounded up each take
   in a whole unit more: on the pasta backtest they covered 0.90). A product not in the
   calibration, or one that sold a fraction (kilograms), is not rounded.

The served point forecast stays the model's (mean-type: every model is trained on
squared error); P50 is the point plus the median residual (or the median tail), so it
differs from the point where the errors are skewed, and is a whole number for counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri, owens_t

DEFAULT_LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9)
DEFAULT_BAND_STARTS: tuple[int, ...] = (1, 8, 15)  # horizon bands 1–7, 8–14, 15–H
DEFAULT_SHRINKAGE = 28.0  # pseudo-days of the group prior in each product's scale
DEFAULT_LEVEL_POWER = 1.0  # γ: the scale grows with (point + c)^γ (0: a fixed scale)
LEVEL_OFFSET = 1.0  # c, in units: keeps the level factor finite for a zero forecast
# the level factor's range: a forecast far outside the calibration's levels is not
# trusted to scale the error by more than this
LEVEL_FACTOR_BOUNDS = (0.25, 4.0)
INTERVALS = "intervals.json"  # under a run's model/: {kind: calibration}
# the quantile tails' conformity score (issue 27): its unit, each product's own offset,
# and whether the tail or the residual quantile serves a level (`fit_intervals`)
TAIL_SCALES = ("band", "product", "width")
TAIL_CHOICES = ("none", "level", "product")
DEFAULT_TAIL_SCALE = "band"
DEFAULT_TAIL_SHRINKAGE: float | None = None
DEFAULT_TAIL_CHOICE = "none"
DEFAULT_TAIL_FLOOR = 0.01  # units: a P10 tail under 1/100 of a unit is served as 0
DEFAULT_MEDIAN_POINT_GRID: tuple[float, ...] = (0.0,)
# P50 in whole units for products that sell whole units (issue 27, the eighth pass)
DEFAULT_WHOLE_MEDIAN = True
# the blend's median tail: this weight of its own point, the rest LightGBM's P50 tail
BLEND_MEDIAN_POINT = 0.5


def tail_column(level: float) -> str:
    """The forecast frame's column of the quantile booster's tail at `level` ("tail_p10")."""
    return f"tail_{column_name(level)}"


def with_blend_tails(
    blended: pd.DataFrame,
    gbm: pd.DataFrame,
    column: str,
    move: bool = False,
    median_point: float | None = None,
) -> pd.DataFrame:
    """`blended` (a blend's forecasts, `column` its point) with LightGBM's tail columns
    (`gbm`: the same rows) as they are, or with `move` shifted by the blend's difference
    from LightGBM's point (on the pasta backtest the unmoved tails scored the lower WSPL:
    docs/trainer.md, the fourth pass); its median tail mixed with its own point
    (`blend_median`, weight `median_point`, default `BLEND_MEDIAN_POINT`)."""
    tails = [c for c in gbm.columns if str(c).startswith("tail_")]
    if not tails:
        return blended
    diff = blended[column].to_numpy(dtype=float) - gbm[column].to_numpy(dtype=float)
    if not move:
        diff = np.zeros_like(diff)
    out = blended.assign(**{c: gbm[c].to_numpy(dtype=float) + diff for c in tails})
    weight = BLEND_MEDIAN_POINT if median_point is None else median_point
    return blend_median(out, column, weight)


def blend_median(frame: pd.DataFrame, column: str, weight: float) -> pd.DataFrame:
    """`frame` (a blend's forecasts with LightGBM's tails) with its median tail
    `tail_p50` as `weight` × its own point `column` + (1 − weight) × LightGBM's: the
    blend's median then carries the LSTM's part of the blend as its point does (the
    conformal shift is calibrated on the mixed tail). Unchanged without `tail_p50` or
    at weight 0."""
    col = tail_column(0.5)
    if not weight or col not in frame.columns:
        return frame
    point = np.clip(frame[column].to_numpy(dtype=float), 0.0, None)
    return frame.assign(**{col: weight * point + (1 - weight) * frame[col].to_numpy(dtype=float)})


def whole_units(values: np.ndarray) -> np.ndarray:
    """`values` rounded half up to whole units (2.5 -> 3), the rule of the whole-number
    median (`whole_median`)."""
    return np.floor(np.asarray(values, dtype=float) + 0.5)


def column_name(level: float) -> str:
    """The column of quantile `level` (0.1 -> "p10", 0.5 -> "p50", 0.975 -> "p97_5")."""
    pct = round(level * 100, 6)
    text = f"{pct:g}".replace(".", "_")
    return f"p{text}"


def band_index(step: np.ndarray, band_starts: Sequence[int] = DEFAULT_BAND_STARTS) -> np.ndarray:
    """The band index of each 1-based horizon step (bands start at `band_starts`)."""
    return np.searchsorted(np.asarray(band_starts), np.asarray(step), side="right") - 1


def conformal_quantile(z: np.ndarray, level: float) -> float:
    """Split-conformal quantile of scores `z` at `level` (finite-sample corrected; 0
    without scores)."""
    n = z.size
    if n == 0:
        return 0.0
    if level >= 0.5:
        rank = min(n, math.ceil((n + 1) * level))
    else:
        rank = max(1, math.floor((n + 1) * level))
    return float(np.partition(z, rank - 1)[rank - 1])


@dataclass(frozen=True)
class IntervalCalibration:
    """Per-product scales and per-band standardised quantiles of one forecaster."""

    levels: tuple[float, ...]
    band_starts: tuple[int, ...]
    quantiles: tuple[tuple[float, ...], ...]  # (bands, levels)
    scales: Mapping[str, float]  # product -> shrunk residual scale (units)
    default_scale: float  # products the calibration did not see
    n_residuals: int = 0
    shrinkage: float = DEFAULT_SHRINKAGE
    # the level factor ((point + c) / (m_p + c))^γ; γ = 0 (older calibrations): none
    level_power: float = 0.0
    mean_points: Mapping[str, float] = field(default_factory=dict)  # product -> m_p
    # product -> share of its calibration days with zero sales, and the coefficients
    # (b0, b1, b2) of the chance of no sale; empty: no point mass at zero
    zero_shares: Mapping[str, float] = field(default_factory=dict)
    zero_model: tuple[float, ...] = ()
    # the quantile tails' levels and per-band shifts (bands, tail levels); empty: none
    tail_levels: tuple[float, ...] = ()
    tail_shifts: tuple[tuple[float, ...], ...] = ()
    # the unit the tail shifts are in (`TAIL_SCALES`): "band" units, "product" the row's
    # residual scale g·s_p (normalised CQR), "width" the tails' own 10-90 width + c
    tail_scale: str = "band"
    # product -> its own offset per tail level, in the shift's unit, added to the band's
    # (Mondrian CQR per product, shrunk toward 0 where the product has few rows)
    tail_offsets: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    # product -> per tail level, whether the tail serves it (False: the residual quantile,
    # chosen on the calibration rows' pinball loss); a product not listed: the tail
    tail_use: Mapping[str, tuple[bool, ...]] = field(default_factory=dict)
    # a tail below the median served under this many units is served as 0 (sales are
    # counts: a P10 of 0.3 misses every day without a sale); 0: off
    tail_floor: float = 0.0
    # P50 = w · the point + (1 − w) · the method's P50 (w chosen on the calibration rows'
    # pinball loss among `fit_intervals`' `median_point_grid`); 0: the method's alone
    median_point: float = 0.0
    # products whose P50 is served rounded half up to whole units (their calibration
    # sales are whole numbers: `whole_median`); empty: none
    whole_products: frozenset[str] = frozenset()

    @property
    def columns(self) -> tuple[str, ...]:
        """The quantile columns `apply` adds ("p10", "p50", "p90")."""
        return tuple(column_name(a) for a in self.levels)

    def band(self, step: np.ndarray) -> np.ndarray:
        """The band index of each 1-based horizon step."""
        return band_index(step, self.band_starts)

    def quantile_values(
        self,
        products: Sequence[str],
        step: np.ndarray,
        point: np.ndarray,
        tails: Mapping[float, np.ndarray] | None = None,
    ) -> dict:
        """`{column: values}` for points `point` of `products` at horizon `step` (1-based);
        `tails`: level -> the quantile booster's forecast, used at the calibration's
        `tail_levels` (rows where it is NaN get the residual quantile)."""
        # per-product figures looked up once per distinct product, then spread to rows
        unique, row = np.unique(
            np.asarray([str(p) for p in products], dtype=object), return_inverse=True
        )

        def lookup(table: Mapping[str, float], missing: float) -> np.ndarray:
            return np.array([table.get(p, missing) for p in unique], dtype=float)[row]

        scale = lookup(self.scales, self.default_scale)
        q = np.asarray(self.quantiles, dtype=float)[self.band(step)]  # (N, L)
        point = np.asarray(point, dtype=float)
        if self.level_power:
            mean = lookup(self.mean_points, np.nan)
            scale = scale * np.nan_to_num(level_factor(point, mean, self.level_power), nan=1.0)
        values = np.clip(point[:, None] + scale[:, None] * q, 0.0, None)
        p0 = np.zeros_like(point)
        if self.zero_model:
            share = lookup(self.zero_shares, np.nan)
            mean = lookup(self.mean_points, 0.0)
            p0 = zero_probability(self.zero_model, np.nan_to_num(share), point, mean)
            p0 = np.where(np.isnan(share), 0.0, p0)  # a product not seen: no zero mass
            for i, a in enumerate(self.levels):
                if a < 0.5:
                    values[p0 > a, i] = 0.0
        if tails and self.tail_shifts:
            shift = np.asarray(self.tail_shifts, dtype=float)[self.band(step)]  # (N, T)
            unit = tail_unit(self.tail_scale, scale, tails, len(point))
            n_tails = len(self.tail_levels)
            offsets = np.array(
                [self.tail_offsets.get(p, (0.0,) * n_tails) for p in unique], dtype=float
            ).reshape(len(unique), n_tails)[row]
            use = np.array(
                [self.tail_use.get(p, (True,) * n_tails) for p in unique], dtype=bool
            ).reshape(len(unique), n_tails)[row]
            for j, a in enumerate(self.tail_levels):
                if a in tails and a in self.levels:
                    i = self.levels.index(a)
                    tail = np.asarray(tails[a], dtype=float) + unit * (shift[:, j] + offsets[:, j])
                    keep = np.isnan(tail) | ~use[:, j]
                    values[:, i] = np.where(keep, values[:, i], np.clip(tail, 0, None))
                    if self.tail_floor and a < 0.5:
                        snap = ~keep & (values[:, i] < self.tail_floor)
                        values[snap, i] = 0.0
        if self.median_point and 0.5 in self.levels:
            i = self.levels.index(0.5)
            w = self.median_point
            values[:, i] = w * np.clip(point, 0.0, None) + (1 - w) * values[:, i]
        values = np.maximum.accumulate(values, axis=1)  # quantiles never cross
        if self.whole_products and 0.5 in self.levels:
            whole = np.array([p in self.whole_products for p in unique], dtype=bool)[row]
            i = self.levels.index(0.5)
            values[whole, i] = whole_units(values[whole, i])
            values = np.maximum.accumulate(values, axis=1)
        return {c: values[:, i] for i, c in enumerate(self.columns)}

    def apply(self, frame: pd.DataFrame, column: str = "predicted") -> pd.DataFrame:
        """`frame` with a column per level, from its point forecasts `column`.

        The horizon step is `horizon_step` when present, else days from `origin_date`
        (the window's first target day), else the day's rank from the product's first
        target date (a served forecast: one origin per product).
        """
        if frame.empty:
            return frame.assign(**{c: np.array([], dtype=float) for c in self.columns})
        if "horizon_step" in frame.columns:
            step = frame["horizon_step"].to_numpy()
        else:
            dates = pd.to_datetime(frame["target_date"])
            if "origin_date" in frame.columns:
                first = pd.to_datetime(frame["origin_date"])
            else:
                first = dates.groupby(frame["product_id"]).transform("min")
            step = ((dates - first).dt.days + 1).to_numpy()
        tails = {
            a: frame[tail_column(a)].to_numpy(dtype=float)
            for a in self.tail_levels
            if tail_column(a) in frame.columns
        }
        values = self.quantile_values(
            list(frame["product_id"].astype(str)),
            step,
            frame[column].to_numpy(dtype=float),
            tails,
        )
        tail_cols = [c for c in frame.columns if str(c).startswith("tail_")]
        return frame.drop(columns=tail_cols).assign(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (`from_dict` reads it back)."""
        return {
            "levels": list(self.levels),
            "band_starts": list(self.band_starts),
            "quantiles": [list(q) for q in self.quantiles],
            "scales": dict(self.scales),
            "default_scale": self.default_scale,
            "n_residuals": self.n_residuals,
            "shrinkage": self.shrinkage,
            "level_power": self.level_power,
            "mean_points": dict(self.mean_points),
            "zero_shares": dict(self.zero_shares),
            "zero_model": list(self.zero_model),
            "tail_levels": list(self.tail_levels),
            "tail_shifts": [list(t) for t in self.tail_shifts],
            "tail_scale": self.tail_scale,
            "tail_offsets": {k: list(v) for k, v in self.tail_offsets.items()},
            "tail_use": {k: list(v) for k, v in self.tail_use.items()},
            "tail_floor": self.tail_floor,
            "median_point": self.median_point,
            "whole_products": sorted(self.whole_products),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IntervalCalibration:
        """Inverse of `to_dict`."""
        return cls(
            levels=tuple(float(a) for a in data["levels"]),
            band_starts=tuple(int(b) for b in data["band_starts"]),
            quantiles=tuple(tuple(float(v) for v in q) for q in data["quantiles"]),
            scales={str(k): float(v) for k, v in data["scales"].items()},
            default_scale=float(data["default_scale"]),
            n_residuals=int(data.get("n_residuals", 0)),
            shrinkage=float(data.get("shrinkage", DEFAULT_SHRINKAGE)),
            level_power=float(data.get("level_power", 0.0)),
            mean_points={str(k): float(v) for k, v in data.get("mean_points", {}).items()},
            zero_shares={str(k): float(v) for k, v in data.get("zero_shares", {}).items()},
            zero_model=tuple(float(b) for b in data.get("zero_model", ())),
            tail_levels=tuple(float(a) for a in data.get("tail_levels", ())),
            tail_shifts=tuple(tuple(float(v) for v in t) for t in data.get("tail_shifts", ())),
            tail_scale=str(data.get("tail_scale", "band")),
            tail_offsets={
                str(k): tuple(float(x) for x in v) for k, v in data.get("tail_offsets", {}).items()
            },
            tail_use={
                str(k): tuple(bool(x) for x in v) for k, v in data.get("tail_use", {}).items()
            },
            tail_floor=float(data.get("tail_floor", 0.0)),
            median_point=float(data.get("median_point", 0.0)),
            whole_products=frozenset(str(p) for p in data.get("whole_products", ())),
        )


def level_factor(point: np.ndarray, mean: np.ndarray, power: float) -> np.ndarray:
    """`((max(point, 0) + c) / (max(mean, 0) + c))^power`: how much larger the error
    scale is at forecast level `point` than at the product's mean level `mean`, within
    `LEVEL_FACTOR_BOUNDS`."""
    point = np.clip(np.asarray(point, dtype=float), 0.0, None)
    mean = np.clip(np.asarray(mean, dtype=float), 0.0, None)
    factor = ((point + LEVEL_OFFSET) / (mean + LEVEL_OFFSET)) ** power
    return np.clip(factor, *LEVEL_FACTOR_BOUNDS)


def _zero_features(share: np.ndarray, point: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """(N, 3): 1, logit of the product's zero share, log relative level of the point."""
    share = np.clip(np.asarray(share, dtype=float), 0.01, 0.99)
    point = np.clip(np.asarray(point, dtype=float), 0.0, None)
    mean = np.clip(np.asarray(mean, dtype=float), 0.0, None)
    return np.column_stack(
        [np.ones_like(point), np.log(share / (1 - share)), np.log((point + 1) / (mean + 1))]
    )


def zero_probability(
    coef: Sequence[float], share: np.ndarray, point: np.ndarray, mean: np.ndarray
) -> np.ndarray:
    """The chance of no sale on a day forecast `point` of a product with zero share
    `share` and mean calibration point `mean` (the module docstring's logistic)."""
    x = _zero_features(share, point, mean) @ np.asarray(coef, dtype=float)
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def fit_zero_model(
    zero: np.ndarray, share: np.ndarray, point: np.ndarray, mean: np.ndarray
) -> tuple[float, ...]:
    """Coefficients of `zero_probability` by Newton's method (a small ridge keeps them
    finite when no or every day is a zero)."""
    x = _zero_features(share, point, mean)
    y = np.asarray(zero, dtype=float)
    b = np.zeros(x.shape[1])
    ridge = 1e-3 * np.eye(x.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ b, -50, 50)))
        hess = x.T @ (x * (p * (1 - p))[:, None]) + ridge
        step = np.linalg.solve(hess, x.T @ (y - p) - ridge @ b)
        b = b + step
        if np.max(np.abs(step)) < 1e-8:
            break
    return tuple(float(v) for v in b)


def product_scales(
    frame: pd.DataFrame,
    naive: Mapping[str, float],
    *,
    shrinkage: float = DEFAULT_SHRINKAGE,
    groups: Mapping[str, str] | None = None,
) -> tuple[dict[str, float], float]:
    """Each product's residual scale shrunk toward its group's (see the module docstring).

    `naive`: the product's naive scale (RMS one-day change of its training series);
    `groups`: product -> group (default: one group of all products). Returns the
    scales and the default scale for products not seen.
    """
    err = frame["actual"].to_numpy(dtype=float) - frame["predicted"].to_numpy(dtype=float)
    ok = np.isfinite(err)
    per = (
        pd.DataFrame(
            {
                "product_id": frame["product_id"].astype(str).to_numpy()[ok],
                "target_date": frame["target_date"].to_numpy()[ok],
                "e2": err[ok] ** 2,
            }
        )
        .groupby("product_id")
        .agg(ms=("e2", "mean"), n=("target_date", "nunique"))
    )
    base = per.index.map(lambda p: float(naive.get(p, np.nan))).to_numpy(dtype=float)
    raw = np.sqrt(per["ms"].to_numpy())
    group = per.index.map(lambda p: (groups or {}).get(p, "")).to_numpy()
    ratio = np.where(base > 0, raw / np.where(base > 0, base, 1.0), np.nan)
    n = per["n"].to_numpy(dtype=float)
    scales: dict[str, float] = {}
    for g in np.unique(group):
        mine = group == g
        r = ratio[mine][np.isfinite(ratio[mine])]
        c = float(np.median(r)) if r.size else float("nan")
        prior2 = (c * base[mine]) ** 2
        own2 = raw[mine] ** 2
        shrunk = np.where(
            np.isfinite(prior2), (n[mine] * own2 + shrinkage * prior2) / (n[mine] + shrinkage), own2
        )
        scales.update(zip(per.index[mine], np.sqrt(shrunk).tolist(), strict=True))
    values = np.array(list(scales.values()))
    default = float(np.median(values)) if values.size else 1.0
    return scales, default


def fit_intervals(
    frame: pd.DataFrame,
    naive: Mapping[str, float],
    *,
    levels: Sequence[float] = DEFAULT_LEVELS,
    band_starts: Sequence[int] = DEFAULT_BAND_STARTS,
    shrinkage: float = DEFAULT_SHRINKAGE,
    groups: Mapping[str, str] | None = None,
    level_power: float = DEFAULT_LEVEL_POWER,
    zero_mass: bool = True,
    tail_scale: str = DEFAULT_TAIL_SCALE,
    tail_shrinkage: float | None = DEFAULT_TAIL_SHRINKAGE,
    tail_choice: str = DEFAULT_TAIL_CHOICE,
    tail_floor: float = DEFAULT_TAIL_FLOOR,
    median_point_grid: Sequence[float] = DEFAULT_MEDIAN_POINT_GRID,
    whole_median: bool = DEFAULT_WHOLE_MEDIAN,
) -> IntervalCalibration:
    """Calibrate intervals on out-of-sample forecasts `frame` (product_id, target_date,
    horizon_step, actual, predicted: e.g. validation windows of a held-out model).

    `level_power`: γ of the level factor (0: the scale does not follow the forecast's
    level); `zero_mass`: lower quantiles at 0 below each product's zero-sales share
    (see the module docstring). Where `frame` carries quantile tails (`tail_p10`, ...):
    `tail_scale` the unit of their conformity score (`TAIL_SCALES`), `tail_shrinkage`
    pseudo-rows of each product's own offset (None: none), `tail_choice` whether the
    tail or the residual quantile serves a level, on the calibration rows' pinball loss
    (`TAIL_CHOICES`), `tail_floor` the units under which a tail below the median is
    served as 0 (after its shift, which is not refitted for it: serving 0 can only
    remove misses below; 0: off);
    `median_point_grid` the weights of the point in P50 to choose among on the
    calibration rows' pinball loss (the point forecast is mean-type, the method's P50 a
    median: on skewed counts either can serve P50 better); `whole_median` rounds the P50
    of each product whose calibration sales are all whole numbers to whole units."""
    if tail_scale not in TAIL_SCALES:
        raise ValueError(f"tail_scale must be one of {TAIL_SCALES}, got {tail_scale!r}")
    if tail_choice not in TAIL_CHOICES:
        raise ValueError(f"tail_choice must be one of {TAIL_CHOICES}, got {tail_choice!r}")
    if not (np.isfinite(tail_floor) and tail_floor >= 0):
        raise ValueError(f"tail_floor must be a number >= 0, got {tail_floor}")
    if not median_point_grid or any(not 0.0 <= w <= 1.0 for w in median_point_grid):
        raise ValueError(f"median_point_grid must hold weights in [0, 1], got {median_point_grid}")
    if tail_shrinkage is not None and not (np.isfinite(tail_shrinkage) and tail_shrinkage >= 0):
        raise ValueError(f"tail_shrinkage must be None or a number >= 0, got {tail_shrinkage}")
    levels = tuple(sorted(float(a) for a in levels))
    if not levels or any(not 0.0 < a < 1.0 for a in levels):
        raise ValueError(f"interval levels must lie in (0, 1), got {levels}")
    if sorted(band_starts) != list(band_starts) or not band_starts or band_starts[0] != 1:
        raise ValueError(f"band starts must be increasing from 1, got {band_starts}")
    missing = {"product_id", "target_date", "horizon_step", "actual", "predicted"} - set(
        frame.columns
    )
    if missing:
        raise ValueError(f"calibration frame lacks column(s) {sorted(missing)}")
    if not (np.isfinite(level_power) and level_power >= 0):
        raise ValueError(f"level_power must be a finite number >= 0, got {level_power}")
    data = frame[np.isfinite(frame["actual"].to_numpy(dtype=float))]
    data = data[np.isfinite(data["predicted"].to_numpy(dtype=float))]
    if data.empty:
        raise ValueError("no residual to calibrate the intervals on")
    # per-product figures on integer codes (a dict lookup per row is slow at scale)
    codes, uniques = pd.factorize(data["product_id"].astype(str).to_numpy(dtype=object))
    point = data["predicted"].to_numpy(dtype=float)
    mean = np.bincount(codes, weights=np.clip(point, 0.0, None)) / np.bincount(codes)
    mean_points = dict(zip(uniques, mean.tolist(), strict=True))
    factor = level_factor(point, mean[codes], level_power) if level_power else np.ones_like(point)
    err = (data["actual"].to_numpy(dtype=float) - point) / factor  # level-adjusted
    adjusted = data.assign(actual=point + err)
    scales, default = product_scales(adjusted, naive, shrinkage=shrinkage, groups=groups)
    s = np.array([scales[p] for p in uniques], dtype=float)[codes]
    z = np.divide(err, s, out=np.zeros_like(err), where=s > 1e-9)
    starts = np.asarray(band_starts)
    band = np.searchsorted(starts, data["horizon_step"].to_numpy(), side="right") - 1
    quantiles = []
    for b in range(len(starts)):
        zb = z[band == b]
        if zb.size == 0:  # a band beyond the horizon, or empty: the previous band's
            zb = z[band == b - 1] if b else z
        quantiles.append(tuple(conformal_quantile(zb, a) for a in levels))
    tail_levels = tuple(a for a in levels if tail_column(a) in data.columns)
    tails = {a: data[tail_column(a)].to_numpy(dtype=float) for a in tail_levels}
    unit = tail_unit(tail_scale, s * factor, tails, len(point)) if tails else np.ones(0)
    unit = np.where(unit > 1e-9, unit, np.nan)
    zero = _zero_mass(data, codes, uniques, mean) if zero_mass else {}
    tail_shifts = _tail_shifts(data, tail_levels, unit, band, len(starts))
    cal = IntervalCalibration(
        levels=levels,
        band_starts=tuple(int(b) for b in band_starts),
        quantiles=tuple(quantiles),
        scales=scales,
        default_scale=default,
        n_residuals=int(z.size),
        shrinkage=float(shrinkage),
        level_power=float(level_power),
        mean_points=mean_points if level_power or zero_mass else {},
        **zero,
        tail_levels=tail_levels,
        tail_shifts=tail_shifts,
        tail_scale=tail_scale,
        tail_floor=float(tail_floor),
        whole_products=_whole_products(data, codes, uniques) if whole_median else frozenset(),
    )
    if tail_levels and tail_shrinkage is not None:
        shift = np.asarray(tail_shifts, dtype=float)[band]  # (N, T)
        cal = replace(
            cal,
            tail_offsets=_tail_offsets(data, tails, unit, shift, codes, uniques, tail_shrinkage),
        )
    if tail_levels and tail_choice != "none":
        cal = _choose_tails(cal, data, tails, codes, uniques, tail_choice)
    grid = tuple(float(w) for w in median_point_grid)
    if grid != (0.0,) and 0.5 in levels:
        cal = _choose_median(cal, data, tails, grid)
    return cal


def _whole_products(data: pd.DataFrame, codes: np.ndarray, uniques: np.ndarray) -> frozenset[str]:
    """The products whose calibration sales (`data`'s finite actuals) are all whole numbers."""
    actual = data["actual"].to_numpy(dtype=float)
    fractional = np.bincount(codes, weights=(actual != np.round(actual)).astype(float))
    return frozenset(str(p) for p, f in zip(uniques, fractional, strict=True) if f == 0)


def _choose_median(
    cal: IntervalCalibration,
    data: pd.DataFrame,
    tails: Mapping[float, np.ndarray],
    grid: tuple[float, ...],
) -> IntervalCalibration:
    """`cal` with `median_point` the weight of `grid` whose P50 has the lowest mean
    pinball loss on the calibration rows `data` (the first of equals)."""
    products = data["product_id"].astype(str).to_numpy()
    point = data["predicted"].to_numpy(dtype=float)
    p50 = cal.quantile_values(products, data["horizon_step"].to_numpy(), point, tails)["p50"]
    actual = data["actual"].to_numpy(dtype=float)
    losses = [
        float(np.mean(pinball_loss(actual, w * np.clip(point, 0.0, None) + (1 - w) * p50, 0.5)))
        for w in grid
    ]
    return replace(cal, median_point=grid[int(np.argmin(losses))])


def tail_unit(
    kind: str, scale: np.ndarray, tails: Mapping[float, np.ndarray], n: int
) -> np.ndarray:
    """Each row's unit of the tails' conformity score under `tail_scale` `kind`: 1
    ("band"), the row's residual scale `scale` = g·s_p ("product": normalised CQR, the
    shift grows with the product's own error scale), or the tails' outermost width
    plus `LEVEL_OFFSET` ("width": the boosters' own spread, Romano et al.'s normalised
    variant)."""
    if kind == "band":
        return np.ones(n)
    if kind == "product":
        return np.asarray(scale, dtype=float)
    if kind == "width":
        lo, hi = min(tails), max(tails)
        if not lo < 0.5 < hi:
            raise ValueError("tail_scale 'width' needs a tail on each side of the median")
        width = np.nan_to_num(np.asarray(tails[hi]) - np.asarray(tails[lo]), nan=0.0)
        return np.clip(width, 0.0, None) + LEVEL_OFFSET
    raise ValueError(f"tail_scale must be one of {TAIL_SCALES}, got {kind!r}")


def _tail_offsets(
    data: pd.DataFrame,
    tails: Mapping[float, np.ndarray],
    unit: np.ndarray,
    shift: np.ndarray,
    codes: np.ndarray,
    uniques: Sequence[str],
    shrinkage: float,
) -> dict[str, tuple[float, ...]]:
    """Mondrian CQR per product, shrunk: for each tail level `α`, the product's own
    quantile at `α` of its rows' scores beyond their band's shift, times `n/(n + k)` (`n`
    its distinct target days, `k` = `shrinkage`), so a product whose errors outrun the
    shared shift gets a wider tail and one with few rows keeps about the band's."""
    actual = data["actual"].to_numpy(dtype=float)
    days = (
        pd.DataFrame({"c": codes, "d": data["target_date"].to_numpy()})
        .drop_duplicates()
        .groupby("c")
        .size()
    )
    n_days = days.reindex(range(len(uniques)), fill_value=0).to_numpy(dtype=float)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    levels = list(tails)
    excess = np.column_stack(
        [(actual - tails[a]) / unit - shift[:, j] for j, a in enumerate(levels)]
    )[order]
    out = {}
    for c, p in enumerate(uniques):
        rows = excess[bounds[c] : bounds[c + 1]]
        weight = n_days[c] / (n_days[c] + shrinkage) if n_days[c] else 0.0
        offsets = []
        for j, a in enumerate(levels):
            r = rows[:, j][np.isfinite(rows[:, j])]
            offsets.append(weight * conformal_quantile(r, a) if r.size else 0.0)
        out[str(p)] = tuple(offsets)
    return out


def _choose_tails(
    cal: IntervalCalibration,
    data: pd.DataFrame,
    tails: Mapping[float, np.ndarray],
    codes: np.ndarray,
    uniques: Sequence[str],
    how: str,
) -> IntervalCalibration:
    """`cal` with each tail level served by the tail or by the residual quantile,
    whichever has the lower mean pinball loss on the calibration rows: for all products
    together (`how` "level") or each product's own rows ("product")."""
    products = data["product_id"].astype(str).to_numpy()
    step = data["horizon_step"].to_numpy()
    point = data["predicted"].to_numpy(dtype=float)
    actual = data["actual"].to_numpy(dtype=float)
    with_tails = cal.quantile_values(products, step, point, tails)
    without = replace(cal, tail_levels=(), tail_shifts=()).quantile_values(products, step, point)
    wins = []
    for a in cal.tail_levels:
        col = column_name(a)
        gain = pinball_loss(actual, without[col], a) - pinball_loss(actual, with_tails[col], a)
        if how == "level":
            wins.append(np.full(len(uniques), np.nansum(gain) >= 0))
        else:
            wins.append(
                np.bincount(codes, weights=np.nan_to_num(gain), minlength=len(uniques)) >= 0
            )
    use = np.column_stack(wins)
    return replace(cal, tail_use={str(p): tuple(map(bool, use[c])) for c, p in enumerate(uniques)})


def pinball_loss(actual: np.ndarray, quantile: np.ndarray, level: float) -> np.ndarray:
    """Each row's pinball (quantile) loss of `quantile` at `level` for `actual`."""
    diff = np.asarray(actual, dtype=float) - np.asarray(quantile, dtype=float)
    return np.maximum(level * diff, (level - 1) * diff)


def _tail_shifts(
    data: pd.DataFrame,
    tail_levels: tuple[float, ...],
    unit: np.ndarray,
    band: np.ndarray,
    n_bands: int,
) -> tuple[tuple[float, ...], ...]:
    """Each band's split-conformal shift of the tail levels: the quantile at `α` of the
    score `(actual - tail) / unit` (`unit`: `tail_unit`'s)."""
    if not tail_levels:
        return ()
    actual = data["actual"].to_numpy(dtype=float)
    shifts = []
    for b in range(n_bands):
        mine = band == b
        if not mine.any():  # a band beyond the horizon, or empty: the previous band's
            mine = band == b - 1 if b else np.ones_like(band, dtype=bool)
        row = []
        for a in tail_levels:
            r = (actual[mine] - data[tail_column(a)].to_numpy(dtype=float)[mine]) / unit[mine]
            row.append(conformal_quantile(r[np.isfinite(r)], a))
        shifts.append(tuple(row))
    return tuple(shifts)


ZERO_MODEL_ROWS = 200_000  # the zero model is fitted on at most this many rows (3 numbers)


def _zero_mass(
    data: pd.DataFrame, codes: np.ndarray, uniques: Sequence[str], mean: np.ndarray
) -> dict[str, Any]:
    """The calibration's `zero_shares` and `zero_model` (`codes`: each row's product
    among `uniques`, whose mean points are `mean`)."""
    shares = zero_shares(data)
    share = np.array([shares[p] for p in uniques], dtype=float)
    take = slice(None, None, max(1, -(-len(codes) // ZERO_MODEL_ROWS)))  # evenly thinned
    coef = fit_zero_model(
        data["actual"].to_numpy(dtype=float)[take] <= 0,
        share[codes][take],
        data["predicted"].to_numpy(dtype=float)[take],
        mean[codes][take],
    )
    return {"zero_shares": shares, "zero_model": coef}


def zero_shares(frame: pd.DataFrame) -> dict[str, float]:
    """Each product's share of distinct target days with zero sales (`actual` <= 0)."""
    days = frame.drop_duplicates(["product_id", "target_date"])
    zero = days["actual"].to_numpy(dtype=float) <= 0
    return pd.Series(zero).groupby(days["product_id"].astype(str).to_numpy()).mean().to_dict()


def one_sided_variance_factor(phi: np.ndarray, n: int, level: float) -> np.ndarray:
    """How much serial dependence inflates the variance of the share of `n` consecutive
    days below a `level` quantile (a hit of an interval whose lower bound is 0), the
    errors Gaussian AR(1) with lag-1 correlation `phi`: `1 + 2 Σ_j (1 - j/n) ρ(phi^j)`,
    `ρ(r) = (Φ₂(h, h; r) - p²) / (p(1 - p))`, `h = Φ⁻¹(p)`, `Φ₂(h, h; r) = Φ(h) -
    2 T(h, √((1-r)/(1+r)))` (Owen's T). A one-sided indicator keeps the odd terms a
    central one cancels: at phi 0.5 and 28 days 1.83, against 1.41 for the central 80 %
    interval (`forecastguard.health.coverage.variance_factor`)."""
    from forecastguard.health.coverage import MAX_PHI

    if not 0.0 < level < 1.0 or n < 1:
        raise ValueError(f"need 0 < level < 1 and n >= 1, got {level}, {n}")
    grid = np.linspace(0.0, MAX_PHI, 96)
    lags = np.arange(1, max(n, 2))
    r = grid[:, None] ** lags[None, :]
    h = float(ndtri(level))
    joint = ndtr(h) - 2.0 * owens_t(h, np.sqrt((1.0 - r) / (1.0 + r)))
    rho = (joint - level * level) / (level * (1.0 - level))
    factors = 1.0 + 2.0 * ((1.0 - lags / n) * rho).sum(axis=1)
    return np.interp(np.clip(np.asarray(phi, dtype=float), 0.0, MAX_PHI), grid, factors)


def coverage_standard_error(
    adjusted_hits: np.ndarray,
    days: np.ndarray,
    products: np.ndarray,
    errors: np.ndarray,
    floored: np.ndarray,
    nominal: float = 0.8,
) -> tuple[float | None, float | None]:
    """(standard error, serial variance factor) of the mean of `adjusted_hits` — one
    row per product-day, each a hit (1/0) less alpha/2 on a day whose lower bound is 0
    (`floored`) — from the test split itself, closed form (deterministic).

    Two dependences make the binomial `p(1-p)/N` too small. Products sell together (a
    busy day is busy for many), so the rows are clustered by day: the variance is the
    day-clustered (sandwich) variance of the mean, `T/(T-1) * sum_t z_t^2 / N^2`, `z_t`
    the day's sum of `adjusted_hits - mean` over its products. And a product's hits are
    serially dependent when its errors are, which the day clusters do not see: the
    variance is multiplied by the variance factor of the hits at each product's
    bias-corrected lag-1 autocorrelation of its `errors`
    (`forecastguard.health.coverage.lag1_autocorrelation`) — the health check's factor
    for a central interval (`variance_factor`) on its days with a lower bound above 0,
    `one_sided_variance_factor` at 1 - alpha/2 on its floored days — averaged over
    products weighted by their share of the squared deviations. With independent
    products this is the effective-sample-size binomial; a common day shock is carried
    by the clusters. `days` and `products` are integer codes (days in time order).
    None, None with fewer than 2 days."""
    from forecastguard.health.coverage import lag1_autocorrelation, variance_factor

    a = np.asarray(adjusted_hits, dtype=float)
    day = np.asarray(days, dtype=np.int64)
    prod = np.asarray(products, dtype=np.int64)
    low = np.asarray(floored, dtype=bool)
    if not (a.shape == day.shape == prod.shape == low.shape == np.shape(errors)):
        raise ValueError(
            "adjusted_hits, days, products, errors and floored must have the same length"
        )
    n_days = int(day.max()) + 1 if day.size else 0
    if n_days < 2 or a.size < 2:
        return None, None
    dev = a - a.mean()
    z = np.bincount(day, weights=dev, minlength=n_days)
    clustered = n_days / (n_days - 1) * float(np.sum(z * z)) / a.size**2
    n_products = int(prod.max()) + 1
    cell = prod * n_days + day  # a product-day's errors averaged when it has several rows
    size = n_products * n_days
    sums = np.bincount(cell, weights=np.asarray(errors, dtype=float), minlength=size)
    counts = np.bincount(cell, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    phi = lag1_autocorrelation(matrix.reshape(n_products, n_days))
    rows = np.bincount(prod, minlength=n_products)
    low_share = np.bincount(prod, weights=low, minlength=n_products) / np.maximum(rows, 1)
    vf = (1.0 - low_share) * variance_factor(
        phi, n_days, nominal
    ) + low_share * one_sided_variance_factor(phi, n_days, 1.0 - (1.0 - nominal) / 2)
    weight = np.bincount(prod, weights=dev * dev, minlength=n_products)
    serial = float(np.sum(weight * vf) / np.sum(weight)) if np.sum(weight) > 0 else 1.0
    return math.sqrt(clustered * serial), serial


def coverage_summary(
    frame: pd.DataFrame,
    lower: str = "p10",
    upper: str = "p90",
    nominal: float = 0.8,
    point: str = "predicted",
) -> dict[str, Any]:
    """Share of points inside [lower, upper] overall and its 10th percentile over
    products, and the mean interval score (Gneiting & Raftery, in units; lower is better).

    `coverage_adjusted` allows for the days whose lower bound is 0: sales cannot fall
    below it, so there a right interval covers 1 - alpha/2, not the nominal — sales are
    counts and many products often sell nothing. It is the coverage less alpha/2 times the
    share of such days; its expectation is the nominal for right quantiles (the promotion
    guard judges it). `coverage_se` is its standard error from these rows
    (`coverage_standard_error`: clustered by `target_date`, serial dependence from each
    product's errors `actual - point`, or the interval's midpoint without a `point`
    column; None without a `target_date` column or with fewer than 2 days), and
    `coverage_serial_factor` the variance factor it includes.
    """
    ok = frame["actual"].notna() & frame[lower].notna() & frame[upper].notna()
    f = frame[ok]
    if f.empty:
        return {
            "nominal": nominal,
            "coverage": None,
            "coverage_adjusted": None,
            "coverage_se": None,
            "coverage_serial_factor": None,
            "floor_share": None,
            "coverage_p10": None,
            "interval_score": None,
            "mean_width": None,
            "points": 0,
        }
    y, lo, hi = (f[c].to_numpy(dtype=float) for c in ("actual", lower, upper))
    hit = (y >= lo) & (y <= hi)
    per = pd.Series(hit).groupby(f["product_id"].to_numpy()).mean()
    alpha = 1.0 - nominal
    score = (hi - lo) + (2 / alpha) * ((lo - y) * (y < lo) + (y - hi) * (y > hi))
    floored = lo <= 0  # lower bounds sales cannot fall below
    floor_share = float(floored.mean())
    se = serial = None
    if "target_date" in f.columns:
        product_codes, _ = pd.factorize(f["product_id"], sort=False)
        day_codes, _ = pd.factorize(pd.to_datetime(f["target_date"]), sort=True)
        centre = f[point].to_numpy(dtype=float) if point in f.columns else (lo + hi) / 2
        se, serial = coverage_standard_error(
            hit - alpha / 2 * floored, day_codes, product_codes, y - centre, floored, nominal
        )
    return {
        "nominal": nominal,
        "coverage": float(hit.mean()),
        "coverage_adjusted": float(hit.mean() - alpha / 2 * floor_share),
        "coverage_se": se,
        "coverage_serial_factor": serial,
        "floor_share": floor_share,
        "coverage_p10": float(np.percentile(per.to_numpy(), 10)),
        "interval_score": float(score.mean()),
        "mean_width": float((hi - lo).mean()),
        "points": int(hit.size),
    }

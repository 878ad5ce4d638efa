"""Forecast intervals: split-conformal quantiles of out-of-sample residuals.

A calibration is fitted on forecasts of days the model did not train on (the validation
windows of the held-out model) and turns any point forecast of the same forecaster into
quantiles (default P10/P50/P90):

1. **Each product's noise scale**, shrunk toward its group where data is thin. The raw
   scale is the RMS of the product's residuals `e = actual - predicted` over its `n`
   distinct target days. Its prior is the group's ratio of residual scale to the
   product's own naive scale (the RMSSE denominator from the long training history),
   times that naive scale, so a product that sells 2 a day and one that sells 50 share
   a *relative* prior, not an absolute one:
   `s_p² = (n·ŝ_p² + k·(c_g·naive_p)²) / (n + k)`, `c_g` the median of `ŝ/naive` in
   the group, `k` = `TrainConfig.interval_shrinkage` pseudo-days.
2. **Per horizon band** (steps 1–7, 8–14, 15–H): the standardised residuals `e / s_p`
   of every product are pooled, and their empirical quantiles at the levels, with the
   split-conformal finite-sample correction (`ceil((n+1)·α)/n` above the median,
   `floor((n+1)·α)/n` below), are the band's quantiles `q_b(α)`.
3. **Apply**: `Q_α = max(0, point + s_p·q_b(α))` (sales are never negative). A product
   the calibration has not seen gets the group's median scale.

The served point forecast stays the model's (mean-type: every model is trained on
squared error); P50 is the point plus the median residual, so it differs from the point
where the errors are skewed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9)
DEFAULT_BAND_STARTS: tuple[int, ...] = (1, 8, 15)  # horizon bands 1–7, 8–14, 15–H
DEFAULT_SHRINKAGE = 28.0  # pseudo-days of the group prior in each product's scale
INTERVALS = "intervals.json"  # under a run's model/: {kind: calibration}


def column_name(level: float) -> str:
    """The column of quantile `level` (0.1 -> "p10", 0.5 -> "p50", 0.975 -> "p97_5")."""
    pct = round(level * 100, 6)
    text = f"{pct:g}".replace(".", "_")
    return f"p{text}"


def _conformal_quantile(z: np.ndarray, level: float) -> float:
    """Split-conformal quantile of scores `z` at `level` (finite-sample corrected)."""
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

    @property
    def columns(self) -> tuple[str, ...]:
        """The quantile columns `apply` adds ("p10", "p50", "p90")."""
        return tuple(column_name(a) for a in self.levels)

    def band(self, step: np.ndarray) -> np.ndarray:
        """The band index of each 1-based horizon step."""
        starts = np.asarray(self.band_starts)
        return np.searchsorted(starts, np.asarray(step), side="right") - 1

    def quantile_values(self, products: Sequence[str], step: np.ndarray, point: np.ndarray) -> dict:
        """`{column: values}` for points `point` of `products` at horizon `step` (1-based)."""
        scale = np.array([self.scales.get(str(p), self.default_scale) for p in products])
        q = np.asarray(self.quantiles, dtype=float)[self.band(step)]  # (N, L)
        point = np.asarray(point, dtype=float)
        values = np.clip(point[:, None] + scale[:, None] * q, 0.0, None)
        values = np.maximum.accumulate(values, axis=1)  # quantiles never cross
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
        values = self.quantile_values(
            list(frame["product_id"].astype(str)), step, frame[column].to_numpy(dtype=float)
        )
        return frame.assign(**values)

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
        )


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
) -> IntervalCalibration:
    """Calibrate intervals on out-of-sample forecasts `frame` (product_id, target_date,
    horizon_step, actual, predicted: e.g. validation windows of a held-out model)."""
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
    data = frame[np.isfinite(frame["actual"].to_numpy(dtype=float))]
    if data.empty:
        raise ValueError("no residual to calibrate the intervals on")
    scales, default = product_scales(data, naive, shrinkage=shrinkage, groups=groups)
    s = data["product_id"].astype(str).map(scales).to_numpy(dtype=float)
    err = data["actual"].to_numpy(dtype=float) - data["predicted"].to_numpy(dtype=float)
    z = np.divide(err, s, out=np.zeros_like(err), where=s > 1e-9)
    starts = np.asarray(band_starts)
    band = np.searchsorted(starts, data["horizon_step"].to_numpy(), side="right") - 1
    quantiles = []
    for b in range(len(starts)):
        zb = z[band == b]
        if zb.size == 0:  # a band beyond the horizon, or empty: the previous band's
            zb = z[band == b - 1] if b else z
        quantiles.append(tuple(_conformal_quantile(zb, a) for a in levels))
    return IntervalCalibration(
        levels=levels,
        band_starts=tuple(int(b) for b in band_starts),
        quantiles=tuple(quantiles),
        scales=scales,
        default_scale=default,
        n_residuals=int(z.size),
        shrinkage=float(shrinkage),
    )


def coverage_summary(
    frame: pd.DataFrame, lower: str = "p10", upper: str = "p90", nominal: float = 0.8
) -> dict[str, Any]:
    """Share of points inside [lower, upper] overall and its 10th percentile over
    products, and the mean interval score (Gneiting & Raftery, in units; lower is better)."""
    ok = frame["actual"].notna() & frame[lower].notna() & frame[upper].notna()
    f = frame[ok]
    if f.empty:
        return {"nominal": nominal, "coverage": None, "coverage_p10": None, "interval_score": None}
    y, lo, hi = (f[c].to_numpy(dtype=float) for c in ("actual", lower, upper))
    hit = (y >= lo) & (y <= hi)
    per = pd.Series(hit).groupby(f["product_id"].to_numpy()).mean()
    alpha = 1.0 - nominal
    score = (hi - lo) + (2 / alpha) * ((lo - y) * (y < lo) + (y - hi) * (y > hi))
    return {
        "nominal": nominal,
        "coverage": float(hit.mean()),
        "coverage_p10": float(np.percentile(per.to_numpy(), 10)),
        "interval_score": float(score.mean()),
        "mean_width": float((hi - lo).mean()),
        "points": int(hit.size),
    }

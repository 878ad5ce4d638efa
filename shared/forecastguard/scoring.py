"""Scale-free accuracy: the one RMSSE of the project (trainer, experiments, health check).

RMSSE (M5's measure) of a product is `RMSE / scale`, where `scale` is the RMS of a naive
forecast's in-sample errors on the product's history, `y[t] - y[t - lag]`: lag 1 (M5,
the trainer and the experiments) or lag 7 (the health check's seasonal-naive scale).
Days without a value are NaN and every pair with a NaN side is skipped; callers decide
which history to pass (e.g. the experiments start each product at its first sale and
count unrecorded days as 0). Aggregates follow the fairness view: every product counts
once (mean, median, worst decile) and disparity is p90 / median.

numpy only, so the light library stays light.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "disparity_ratio",
    "naive_scale",
    "per_group_rmsse",
    "rmsse",
    "worst_decile",
]


def naive_scale(history: np.ndarray, lag: int = 1) -> np.ndarray:
    """RMS of `y[t] - y[t - lag]` per row of a (groups × days) history; NaN = no value.

    Pairs with a missing side are skipped; NaN for rows without a pair. A scale of 0 is
    returned as 0 (a constant history): `rmsse` turns it into NaN.
    """
    h = np.asarray(history, dtype=float)
    if h.ndim != 2:
        raise ValueError(f"history must be a 2-D (groups x days) matrix, got {h.ndim}-D")
    if lag < 1:
        raise ValueError(f"lag must be >= 1, got {lag}")
    if h.shape[1] <= lag:
        return np.full(h.shape[0], np.nan)
    diff = h[:, lag:] - h[:, :-lag]
    ok = ~np.isnan(diff)
    count = ok.sum(axis=1)
    total = np.where(ok, diff * diff, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(total / np.where(count > 0, count, np.nan))


def rmsse(rmse: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """RMSE over the naive scale, elementwise; NaN where the scale is 0 or unknown."""
    rmse = np.asarray(rmse, dtype=float)
    scale = np.asarray(scale, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(scale) & (scale > 0), rmse / scale, np.nan)


def per_group_rmsse(
    errors: np.ndarray, groups: np.ndarray, scale: np.ndarray, n_groups: int
) -> np.ndarray:
    """RMSSE per group of flat errors (`groups` 0..n_groups-1); NaN for a group without errors.

    NaN errors are skipped.
    """
    e = np.asarray(errors, dtype=float).reshape(-1)
    g = np.asarray(groups).reshape(-1)
    if e.shape != g.shape:
        raise ValueError(f"errors ({e.size}) and groups ({g.size}) differ in length")
    ok = ~np.isnan(e)
    n = np.bincount(g[ok], minlength=n_groups)[:n_groups]
    sq = np.bincount(g[ok], weights=e[ok] * e[ok], minlength=n_groups)[:n_groups]
    with np.errstate(invalid="ignore", divide="ignore"):
        rmse = np.sqrt(sq / np.where(n > 0, n, np.nan))
    return rmsse(rmse, np.asarray(scale, dtype=float)[:n_groups])


def worst_decile(values: np.ndarray) -> float:
    """Mean of the largest 10% of the finite values (at least one); NaN if none."""
    v = np.asarray(values, dtype=float)
    v = np.sort(v[np.isfinite(v)])
    if not v.size:
        return float("nan")
    k = max(1, int(np.ceil(0.1 * v.size)))
    return float(v[-k:].mean())


def disparity_ratio(values: np.ndarray) -> float:
    """p90 / median of the finite values (NaN if none; inf if the median is 0)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan")
    med = float(np.median(v))
    return float(np.percentile(v, 90) / med) if med > 0 else float("inf")

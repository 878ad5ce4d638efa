"""The health check's statistics: pure, vectorised functions over grouped samples.

Samples are given flat: an integer group code (0..n_groups-1, one group per product) and a
value for every observation. Nothing here loops over products in Python except the KS
p-values, which are computed once per distinct (n_a, n_b, D) — a handful of values in
practice — by `scipy.stats.ks_2samp` itself, so the p-values are exactly scipy's.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np

SEASON = 7  # the seasonal-naive scale of RMSSE: same weekday, one week earlier


@dataclass(frozen=True)
class ErrorMetrics:
    """Per-group accuracy of point forecasts; NaN where a group has no errors."""

    n: np.ndarray  # int64, number of errors
    rmse: np.ndarray
    mae: np.ndarray
    bias: np.ndarray  # mean of (predicted - actual) = -mean(error)


def error_metrics(codes: np.ndarray, errors: np.ndarray, n_groups: int) -> ErrorMetrics:
    """n, RMSE, MAE and bias per group of forecast errors (actual - predicted)."""
    n = np.bincount(codes, minlength=n_groups).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        sq = np.bincount(codes, weights=errors * errors, minlength=n_groups) / n
        ab = np.bincount(codes, weights=np.abs(errors), minlength=n_groups) / n
        mean = np.bincount(codes, weights=errors, minlength=n_groups) / n
    return ErrorMetrics(n=n, rmse=np.sqrt(sq), mae=ab, bias=-mean)


def seasonal_naive_scale(history: np.ndarray, season: int = SEASON) -> np.ndarray:
    """RMS of the seasonal-naive forecast errors y[t] - y[t-season], one value per row.

    `history` is a (groups x days) matrix of consecutive days with NaN where a day is
    missing; pairs with a missing side are skipped. NaN for rows without any pair.
    """
    if history.ndim != 2:
        raise ValueError(f"history must be a 2-D (groups x days) matrix, got {history.ndim}-D")
    if history.shape[1] <= season:
        return np.full(history.shape[0], np.nan)
    diff = history[:, season:] - history[:, :-season]
    ok = ~np.isnan(diff)
    count = ok.sum(axis=1)
    total = np.where(ok, diff * diff, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(total / np.where(count > 0, count, np.nan))


def rmsse(rmse: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Root mean squared scaled error: RMSE over the seasonal-naive scale (NaN if scale 0)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, rmse / scale, np.nan)


@dataclass(frozen=True)
class TwoSample:
    """Group-wise two-sample comparison of samples a (e.g. the window) and b (reference)."""

    n_a: np.ndarray  # int64 sizes
    n_b: np.ndarray
    # The KS statistic D times n_a * n_b: an exact integer, so equal statistics compare equal.
    d_num: np.ndarray
    wasserstein: np.ndarray  # first Wasserstein distance (NaN if a side is empty)
    pooled_std: np.ndarray  # standard deviation of both samples together
    # The samples sorted by (group, value), to hand a group's data to scipy.
    _codes: np.ndarray
    _values: np.ndarray
    _is_b: np.ndarray
    _starts: np.ndarray

    @property
    def statistic(self) -> np.ndarray:
        """The KS statistic D = max |F_a - F_b| per group (NaN if a side is empty)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                (self.n_a > 0) & (self.n_b > 0), self.d_num / (self.n_a * self.n_b), np.nan
            )

    def samples(self, group: int) -> tuple[np.ndarray, np.ndarray]:
        """The two samples of one group (sorted)."""
        lo, hi = self._starts[group], self._starts[group + 1]
        values, is_b = self._values[lo:hi], self._is_b[lo:hi]
        return values[~is_b], values[is_b]


def two_sample(
    codes_a: np.ndarray,
    values_a: np.ndarray,
    codes_b: np.ndarray,
    values_b: np.ndarray,
    n_groups: int,
) -> TwoSample:
    """KS statistic and Wasserstein distance of samples a and b in every group at once.

    One sort of all observations by (group, value); the empirical CDFs are group-wise
    cumulative counts, evaluated (as scipy does) after the last of a run of tied values.
    """
    codes = np.concatenate([codes_a, codes_b]).astype(np.int64, copy=False)
    values = np.concatenate([values_a, values_b]).astype(np.float64, copy=False)
    if np.isnan(values).any():
        raise ValueError("two_sample: samples must not contain NaN")
    is_b = np.concatenate([np.zeros(len(values_a), bool), np.ones(len(values_b), bool)])
    order = np.lexsort((values, codes))
    codes, values, is_b = codes[order], values[order], is_b[order]
    n_a = np.bincount(codes_a, minlength=n_groups).astype(np.int64)
    n_b = np.bincount(codes_b, minlength=n_groups).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(n_a + n_b)])
    d_num = np.zeros(n_groups, np.int64)
    wasserstein = np.full(n_groups, np.nan)
    pooled_std = np.full(n_groups, np.nan)
    total = len(values)
    if total:
        cum_b = np.cumsum(is_b, dtype=np.int64)
        cum_a = np.arange(1, total + 1, dtype=np.int64) - cum_b
        first = starts[:-1]
        base_b = np.where(first > 0, cum_b[np.maximum(first - 1, 0)], 0)
        base_a = first - base_b
        ca = cum_a - base_a[codes]
        cb = cum_b - base_b[codes]
        same_next = np.zeros(total, bool)
        same_next[:-1] = codes[1:] == codes[:-1]
        run_end = ~same_next
        run_end[:-1] |= values[1:] != values[:-1]
        diff = np.abs(ca * n_b[codes] - cb * n_a[codes])
        np.maximum.at(d_num, codes[run_end], diff[run_end])
        # W1 = integral of |F_a - F_b| between consecutive values of the same group.
        step = np.zeros(total)
        step[:-1] = values[1:] - values[:-1]
        step[~same_next] = 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = np.abs(ca / n_a[codes] - cb / n_b[codes])
            area = np.bincount(
                codes, weights=np.where(step > 0, gap * step, 0.0), minlength=n_groups
            )
            size = n_a + n_b
            mean = np.bincount(codes, weights=values, minlength=n_groups) / size
            var = np.bincount(codes, weights=(values - mean[codes]) ** 2, minlength=n_groups)
            pooled_std = np.sqrt(var / size)
        wasserstein = np.where((n_a > 0) & (n_b > 0), area, np.nan)
    return TwoSample(n_a, n_b, d_num, wasserstein, pooled_std, codes, values, is_b, starts)


_ks_cache: dict[tuple[int, int, int], float] = {}
_ks_lock = threading.Lock()
_KS_CACHE_MAX = 200_000


def ks_pvalues(sample: TwoSample, min_samples: int) -> np.ndarray:
    """Two-sided KS p-values per group, exactly `scipy.stats.ks_2samp(a, b).pvalue`.

    NaN for groups with fewer than `min_samples` observations on either side. scipy's
    p-value depends only on (n_a, n_b, D), so it is computed once per distinct triple
    on that group's own data, and remembered.
    """
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    # Imported here: scipy.stats costs about half a second, half the function's cold start.
    from scipy.stats import ks_2samp

    tested = (sample.n_a >= min_samples) & (sample.n_b >= min_samples)
    pvalues = np.full(len(sample.n_a), np.nan)
    groups = np.flatnonzero(tested)
    if not len(groups):
        return pvalues
    keys = np.stack([sample.n_a[groups], sample.n_b[groups], sample.d_num[groups]], axis=1)
    unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    found = np.empty(len(unique))
    for i, (key, group) in enumerate(zip(map(tuple, unique.tolist()), groups[first], strict=True)):
        with _ks_lock:
            cached = _ks_cache.get(key)
        if cached is None:
            a, b = sample.samples(int(group))
            with warnings.catch_warnings():
                # scipy falls back to the asymptotic p-value where the exact one fails.
                warnings.simplefilter("ignore", RuntimeWarning)
                cached = float(ks_2samp(a, b).pvalue)
            with _ks_lock:
                if len(_ks_cache) >= _KS_CACHE_MAX:
                    _ks_cache.clear()
                _ks_cache[key] = cached
        found[i] = cached
    pvalues[groups] = found[inverse.ravel()]
    return pvalues


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN inputs stay NaN, not counted."""
    p = np.asarray(pvalues, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if not m:
        return q
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q


def simes(pvalues: np.ndarray) -> float | None:
    """Simes' global p-value: min over i of m * p_(i) / i, the smallest BH q-value.

    None when no p-value is given.
    """
    q = benjamini_hochberg(pvalues)
    return None if np.isnan(q).all() else float(np.nanmin(q))

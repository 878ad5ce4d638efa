"""The health check's statistics: pure, vectorised functions over grouped samples.

Samples are given flat: an integer group code (0..n_groups-1, one group per product) and a
value for every observation. Nothing here loops over products in Python except the KS
p-values, which are computed once per distinct (n_a, n_b, D) — a handful of values in
practice — by scipy's exact method (`ks_exact_pvalue`, the same double as
`scipy.stats.ks_2samp` without importing `scipy.stats`), so the p-values are exactly scipy's.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from forecastguard import scoring

SEASON = 7  # the seasonal-naive scale of RMSSE: same weekday, one week earlier


SCATTER_BLOCK_ROWS = 1 << 16  # rows a step of `scatter_cells` (its temporaries: ~2 MB)


def scatter_cells(
    out: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray | tuple[np.ndarray, np.ndarray],
    mask: np.ndarray | None = None,
    col_offset: int = 0,
) -> np.ndarray:
    """`out[rows[mask], cols[mask] - col_offset] = values[mask]` (mask None: every
    entry; `values` a pair (a, b): a - b, subtracted a block at a time), a block of
    entries at a time: the same cells written in the same order (a cell given twice keeps
    the later value, as one assignment does), without the masked copies of the three
    arrays at once (~40 MB at 10,000 products x 120 days). Returns `out`."""
    for lo in range(0, len(rows), SCATTER_BLOCK_ROWS):
        part = slice(lo, lo + SCATTER_BLOCK_ROWS)
        keep = slice(None) if mask is None else mask[part]
        if isinstance(values, tuple):
            value = values[0][part][keep] - values[1][part][keep]
        else:
            value = values[part][keep]
        out[rows[part][keep], cols[part][keep] - col_offset] = value
    return out


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
    missing; pairs with a missing side are skipped. NaN for rows without any pair. The
    one implementation is `forecastguard.scoring.naive_scale` (trainer and experiments too).
    """
    return scoring.naive_scale(history, lag=season)


def rmsse(rmse: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Root mean squared scaled error: RMSE over the seasonal-naive scale (NaN if scale 0)."""
    return scoring.rmsse(rmse, scale)


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


def two_sample_rows(a: np.ndarray, b: np.ndarray) -> TwoSample:
    """`two_sample` of samples given as rows: group g's sample a is row g of `a` (groups
    x wa) and its sample b row g of `b`, NaN where a row has fewer values (padding, not
    data). One sort along each short row instead of one sort of every observation by
    (group, value): the same doubles as `two_sample` — the same counts at the ends of
    the runs of ties, and every sum taken in the same order (sorted values, from 0.0,
    one term after another: a cumulative sum here, a weighted bincount there) — and the
    same sorted observations for `TwoSample.samples`."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"two_sample_rows needs groups x values rows, got {a.shape}, {b.shape}")
    n_a = np.count_nonzero(~np.isnan(a), axis=1).astype(np.int64)
    n_b = np.count_nonzero(~np.isnan(b), axis=1).astype(np.int64)
    x = np.concatenate([a, b], axis=1)
    groups, width = x.shape
    order = np.argsort(x, axis=1, kind="stable")  # NaN last; a before b within ties
    v = np.take_along_axis(x, order, axis=1)
    is_b = order >= a.shape[1]
    ok = ~np.isnan(v)
    size = n_a + n_b
    cb = np.cumsum(is_b & ok, axis=1, dtype=np.int64)
    ca = np.arange(1, width + 1, dtype=np.int64)[None, :] - cb
    step = np.zeros_like(v)
    step[:, :-1] = v[:, 1:] - v[:, :-1]  # NaN where the next is padding: a group's end
    run_end = ok & ~(step == 0)  # the last of a run of tied values (NaN != 0: the end)
    diff = np.abs(ca * n_b[:, None] - cb * n_a[:, None])
    d_num = np.where(run_end, diff, 0).max(axis=1, initial=0)
    zero = np.zeros((groups, 1))

    def sequential_sum(terms: np.ndarray) -> np.ndarray:
        # 0.0 + t0 + t1 + ..., in order (as bincount accumulates), not pairwise.
        return np.cumsum(np.concatenate([zero, terms], axis=1), axis=1)[:, -1]

    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(ca / n_a[:, None] - cb / n_b[:, None])
        area = sequential_sum(np.where(ok & (step > 0), gap * step, 0.0))
        mean = sequential_sum(np.where(ok, v, 0.0)) / size
        var = sequential_sum(np.where(ok, (v - mean[:, None]) ** 2, 0.0))
        pooled_std = np.sqrt(var / size)
    wasserstein = np.where((n_a > 0) & (n_b > 0), area, np.nan)
    codes = np.nonzero(ok)[0]
    starts = np.concatenate([[0], np.cumsum(size)])
    return TwoSample(n_a, n_b, d_num, wasserstein, pooled_std, codes, v[ok], is_b[ok], starts)


_ks_cache: dict[tuple[int, int, int], float] = {}
_ks_lock = threading.Lock()
_KS_CACHE_MAX = 200_000
# scipy's ks_2samp (method "auto") is exact up to this sample size, asymptotic above.
_KS_EXACT_MAX_N = 10_000


def ks_exact_pvalue(n_a: int, n_b: int, d_num: int) -> float | None:
    """The two-sided exact KS p-value P(D >= d) of samples of sizes n_a and n_b, where
    d = d_num / (n_a * n_b): the value `scipy.stats.ks_2samp` returns (method "auto"),
    computed without importing `scipy.stats` (0.85 s, a third of a cold check).

    The same recursions as scipy, evaluated in the same order of floating-point
    operations, so the same double (tests compare every (n_a, n_b, d) up to 60 x 60
    with `==`): equal sizes, the alternating series of binomial ratios of the paths
    that leave the band |x - y| < h (Horner-like, from the innermost term);
    unequal sizes, the lattice paths that leave the band |x/n_a - y/n_b| < d, counted
    as the proportion 1 - p column by column (Hodges' inside method with Viehmann's
    recursion for the complement, arXiv 2102.08037). Where rounding takes the exact value
    above 1, scipy's asymptotic value of those cases (`_ks_asymptotic_near_one`). None
    where neither applies (a size above 10,000; rare large sizes with a p-value near 1):
    the caller asks scipy then.
    """
    if n_a < 1 or n_b < 1 or max(n_a, n_b) > _KS_EXACT_MAX_N:
        return None
    g = math.gcd(n_a, n_b)
    h = d_num // g  # D * lcm(n_a, n_b), a whole number
    if h <= 0:
        return 1.0
    prob = _ks_equal_sizes(n_a, h) if n_a == n_b else _ks_unequal_sizes(n_a, n_b, g, h)
    if 0.0 <= prob <= 1.0:
        return prob
    # Rounding took the exact value just above 1 (equal sizes, D of one or two steps):
    # scipy then takes its asymptotic p-value, kstwo.sf(D, round(n_a n_b / (n_a + n_b))).
    return _ks_asymptotic_near_one(n_a, n_b, h / (n_a // g * n_b))


def _ks_asymptotic_near_one(n_a: int, n_b: int, d: float) -> float | None:
    """`scipy.stats.kstwo.sf(d, n)` with n = round(n_a n_b / (n_a + n_b)) where it is
    simple: 1 below the support (d <= 0.5 / n, or n d <= 0.5) and Ruben-Gambino's
    exact form for 0.5 < n d <= 1 (n <= 140), evaluated as scipy does; None elsewhere."""
    big, small = float(max(n_a, n_b)), float(min(n_a, n_b))
    n_float = float(np.round(big * small / (big + small)))
    n = int(n_float)
    if n < 1 or d >= 1.0:
        return None
    if d <= 0.5 / n_float:
        return 1.0
    t = n * d
    if t <= 0.5:
        return 1.0
    if t > 1.0 or n > 140:
        return None
    prob = np.prod(np.arange(1, n + 1) * (1.0 / n) * (2 * t - 1))
    return float(np.clip(1.0 - prob, 0.0, 1.0))


def _ks_equal_sizes(n: int, h: int) -> float:
    """P(D_{n,n} >= h/n) = 2 sum_k (-1)^(k+1) C(2n, n-kh) / C(2n, n), as nested
    ratios r_k = C(2n, n-(k+1)h) / C(2n, n-kh): P = 2 r_0 (1 - r_1 (1 - r_2 (...)))."""
    tail = 0.0
    for k in range(n // h, -1, -1):
        ratio = 1.0
        for j in range(h):
            ratio = (n - k * h - j) * ratio / (n + k * h + j + 1)
        tail = ratio * (1.0 - tail)
    return 2 * tail


def _ks_unequal_sizes(n_a: int, n_b: int, g: int, h: int) -> float:
    """The share of the lattice paths from (0, 0) to (m, n) (m >= n the larger size)
    that leave the band |x n/g - y m/g| < h at some point.

    `out[j - low]` holds, for the current column x, the share of the paths to (x, y = j)
    that already left the band (1 outside it): inside it, the paths arrive from
    (x - 1, j) and (x, j - 1) in the proportions x : j, so
    out(x, j) = (x out(x - 1, j) + j out(x, j - 1)) / (x + j).
    """
    m, n = (n_a, n_b) if n_a >= n_b else (n_b, n_a)
    mg, ng = m // g, n // g
    low, high = 0, min(-(-h // mg), n + 1)  # the band's rows [low, high) at x = 0
    out = [1.0] * (n + 2)
    for j in range(low, high):
        out[j] = 0.0
    for x in range(1, m + 1):
        last_low, last_len = low, high - low
        low = min(max((ng * x - h) // mg + 1, 0), n)
        high = min(-(-(ng * x + h) // mg), n + 1)
        if high <= low:
            return 1.0
        share = 0.0 if low == 0 else 1.0
        for j in range(low, high):
            share = (out[j - last_low] * x + share * j) / (x + j)
            out[j - low] = share
        # Rows above the band stay 1 for the next column.
        for k in range(high - low, last_len):
            out[k] = 1.0
    return out[high - low - 1]


def ks_pvalues(sample: TwoSample, min_samples: int) -> np.ndarray:
    """Two-sided KS p-values per group, exactly `scipy.stats.ks_2samp(a, b).pvalue`.

    NaN for groups with fewer than `min_samples` observations on either side. scipy's
    p-value depends only on (n_a, n_b, D), so it is computed once per distinct triple,
    by `ks_exact_pvalue` (scipy's exact method, without importing scipy.stats) or, where
    that does not apply, by scipy on that group's own data, and remembered.
    """
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
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
            cached = ks_exact_pvalue(*key)
            if cached is None:
                cached = _scipy_ks_pvalue(*sample.samples(int(group)))
            with _ks_lock:
                if len(_ks_cache) >= _KS_CACHE_MAX:
                    _ks_cache.clear()
                _ks_cache[key] = cached
        found[i] = cached
    pvalues[groups] = found[inverse.ravel()]
    return pvalues


def _scipy_ks_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    """scipy's own p-value (large samples: asymptotic; imported only then)."""
    from scipy.stats import ks_2samp

    with warnings.catch_warnings():
        # scipy falls back to the asymptotic p-value where the exact one fails.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ks_2samp(a, b).pvalue)


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


# --- The drift test on forecast errors (issue 13): valid under serial dependence. -------

DRIFT_TESTS = ("level_ar1", "scale_ar1", "shape_ks")  # short names, in component order
DRIFT_KINDS = ("level", "scale", "shape")  # the kind each component test finds
# Weighted Bonferroni over the decided components: a bias matters most. The KS shape test
# is reported only (its null does not hold under general dependence at 10,000 products).
DRIFT_WEIGHTS = (0.6, 0.4, 0.0)
# The spread's minimum is this many times the level's (issue 23): MIN_DRIFT_EFFECT 0.25
# asks for a level change beyond 0.25 sd and a spread ratio beyond 1.5. A spread that
# wanders by a quarter with the sales level is no fault of the model (with a 90-day
# reference, a ratio of 1.25 flagged 0.065 of the null windows whose error sd follows a
# slowly varying level; docs/health.md).
SPREAD_EFFECT_FACTOR = 2.0
# The level test's variance: "separate" (each period its own sigma^2, Welch-Satterthwaite
# degrees of freedom; the default since issue 23's second pass) or "pooled" (one sigma^2
# for both periods, the first pass): with a 90-day reference the pooled variance is
# dominated by the reference's, too small when the window's spread is higher (unequal
# lengths; with 30 + 30 it is robust) — docs/health.md measures both.
LEVEL_VARIANCE = "separate"
MAX_PHI = 0.95  # the AR(1) coefficient is clipped to [0, MAX_PHI]
PHI_MARGIN = 1.0  # standard errors added to the bias-corrected AR(1) coefficient
# For prewhitening before the scale and shape tests (1.0 left the KS tail 5x at phi 0.7).
WHITEN_MARGIN = 2.0
DEV_MARGIN = 2.0  # for the absolute deviations of the scale test (spread clusters)
MIN_WEEKDAY_ADJUST = 28  # errors (both periods) needed to remove weekday means
# Products the prior over phi and the empirical null need to be fitted on their own;
# below, the prior leans towards a flat one and the null spread stays 1 (`drift_decision`).
MIN_PRIOR_PRODUCTS = 500
MIN_NULL_PRODUCTS = 100
EM_ITERATIONS = 150
# Both periods constant (a zero-sales product whose forecast changed): the variance is
# taken as that of rounding to whole units, so the p-value is defined and not 0.
CONSTANT_VARIANCE = 1.0 / 12.0
_TINY = np.finfo(np.float64).tiny
_NEGLIGIBLE = 1e-9  # posterior weight of a phi below which it is left out of a mixture


@dataclass(frozen=True)
class DriftTests:
    """Per-group quantities of the drift tests, window against reference (arrays over
    groups; one group's values never depend on the other groups). The p-values that
    need all groups (the prior over phi, the empirical null, the interval null) are
    `drift_decision`'s.

    NaN where a group has fewer than `min_samples` errors on either side.
    """

    n_ref: np.ndarray
    n_win: np.ndarray
    r1: np.ndarray  # lag-1 autocorrelation of the (weekday-adjusted) errors within periods
    n_total: np.ndarray  # errors in both periods (the r1 likelihood's length)
    level_diff: np.ndarray  # window mean - reference mean of the adjusted errors
    level_se: np.ndarray  # (groups x len(PHI_GRID)): its AR(1) standard error at each phi
    level_dof: np.ndarray  # (groups x len(PHI_GRID)): the effective degrees of freedom
    scale_diff: np.ndarray  # window - reference mean absolute deviation (Brown-Forsythe)
    scale_se: np.ndarray  # its AR(1) standard error (the deviations' cautious phi)
    scale_dof: np.ndarray
    scale_ref: np.ndarray  # the reference's mean absolute deviation
    p_shape: np.ndarray  # KS of the prewhitened errors, on their effective sizes (reported)
    bias_shift: np.ndarray  # window mean error - reference mean error (units)
    bias_shift_sd: np.ndarray  # the same in reference standard deviations
    sd_ref: np.ndarray  # the reference errors' standard deviation (CONSTANT floor if 0)
    spread_ratio: np.ndarray  # window sd / reference sd of the errors
    shape_effect: np.ndarray  # Wasserstein distance of the prewhitened errors / their sd
    # The slow-component level model (issue 23; `drift_decision`): what the variance of
    # the mean change needs at any (phi, omega) — the (weekday-adjusted) periods' sds,
    # the parameters spent, the sums of phi^|i-j| over the pairs of present days at each
    # phi of PHI_GRID (groups x len(PHI_GRID)) and at PHI_SLOW — and the evidence about
    # the slow share: the reference's placebo ratio and its table configuration.
    level_sd_ref: np.ndarray
    level_sd_win: np.ndarray
    level_spent: np.ndarray
    sums_rr: np.ndarray
    sums_ww: np.ndarray
    sums_rw: np.ndarray
    slow_rr: np.ndarray
    slow_ww: np.ndarray
    slow_rw: np.ndarray
    placebo: np.ndarray  # the placebo ratio (`placebo_ratio`; NaN: none)
    placebo_config: np.ndarray  # `slow_table.configuration` (-1: no placebo evidence)

    @property
    def tested(self) -> np.ndarray:
        """Groups with enough errors on both sides."""
        return ~np.isnan(self.level_diff)


@dataclass(frozen=True)
class DriftDecision:
    """The drift p-values and flags of all groups together (`drift_decision`)."""

    p_level: np.ndarray  # |level change| <= min effect: posterior mixture over phi, null sd
    p_scale: np.ndarray  # spread ratio within [1/(1+e), 1+e], null sd
    p_shape: np.ndarray  # KS (reported, not decided on)
    pvalue: np.ndarray  # weighted Bonferroni of level and scale: the p-value decided on
    test: np.ndarray  # index into DRIFT_TESTS of the smallest weighted p (-1: untested)
    qvalue: np.ndarray  # BH over the groups
    drift: np.ndarray  # q <= alpha
    kind: np.ndarray  # index into DRIFT_KINDS of the drift found (-1: none)
    null_sd_level: float  # the empirical null's spread of the level z-values (>= 1)
    null_sd_scale: float
    prior: np.ndarray  # the fitted distribution of phi over PHI_GRID (its marginal)
    phi_mean: np.ndarray  # per group: posterior mean of phi
    # The fitted distribution of the slow component's share over OMEGA_GRID (marginal)
    # and each group's posterior mean share (NaN: untested).
    slow_prior: np.ndarray | None = None
    slow_share: np.ndarray | None = None
    # Whether the slow share was fitted (MIN_PRIOR_PRODUCTS groups with placebo
    # evidence); if not, the level test is the AR(1) model and `slow_prior` is all at 0.
    slow_fitted: bool = False


_MeanSd = tuple[np.ndarray, np.ndarray, np.ndarray]  # (count, mean, sd) of each row


def _nan_mean_sd(x: np.ndarray) -> _MeanSd:
    """(count, mean, sample sd) of each row, ignoring NaN."""
    ok = ~np.isnan(x)
    n = np.count_nonzero(ok, axis=1)
    filled = np.where(ok, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=1) / n
        dev = np.where(ok, x - mean[:, None], 0.0)
        sd = np.sqrt((dev * dev).sum(axis=1) / (n - 1))
    return n, mean, sd


def _t_pvalue(t: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Two-sided p-value of Student's t (NaN where t or dof is NaN or dof < 1)."""
    from scipy.special import stdtr  # lighter than scipy.stats, and only when testing

    p = np.full(t.shape, np.nan)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(t) & (dof >= 1)
        p[ok] = np.minimum(2.0 * stdtr(dof[ok], -np.abs(t[ok])), 1.0)
        p[np.isinf(t) & (dof >= 1)] = 0.0  # no variance at all, yet a change
    return p


def _period_stats(x: np.ndarray, m: int) -> tuple[_MeanSd, _MeanSd]:
    """`_nan_mean_sd` of each period of x (columns < m: reference, else window): computed
    once and handed to the functions below that need them (the same doubles)."""
    return _nan_mean_sd(x[:, :m]), _nan_mean_sd(x[:, m:])


def _period_centred(
    x: np.ndarray, m: int, periods: tuple[_MeanSd, _MeanSd] | None = None
) -> np.ndarray:
    """x minus the mean of its period (columns < m: reference, else window), per row
    (`periods`: its `_period_stats`, if known)."""
    (_, mr, _), (_, mw, _) = periods or _period_stats(x, m)
    return np.concatenate([x[:, :m] - mr[:, None], x[:, m:] - mw[:, None]], axis=1)


def lag1_r(
    x: np.ndarray, m: int, periods: tuple[_MeanSd, _MeanSd] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(r1, number of values) of each row of x (NaN: missing), periods split at column m:
    the lag-1 autocorrelation within each period around its own mean (0 if constant).
    `periods`: x's `_period_stats`, if already computed."""
    present = ~np.isnan(x)
    d = np.where(present, _period_centred(x, m, periods), 0.0)
    pair = present[:, 1:] & present[:, :-1]
    pair[:, m - 1] = False  # not across the start of the window
    num = np.where(pair, d[:, 1:] * d[:, :-1], 0.0).sum(axis=1)
    den = (d * d).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r1 = np.where(den > 0, num / den, 0.0)
    return r1, np.count_nonzero(present, axis=1)


def ar1_coefficient(
    x: np.ndarray,
    m: int,
    margin: float = PHI_MARGIN,
    lag1: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """A cautious AR(1) coefficient per row of x (NaN: missing), periods split at column m.

    The lag-1 autocorrelation within each period around its own mean (`lag1_r`),
    corrected for its small-sample bias (Kendall 1954: E[r1] ~ phi - (1 + 3 phi) / n for
    a series of n), plus `margin` standard errors (sqrt((1 - phi^2) / n)), clipped to
    [0, MAX_PHI]. Under-estimating phi makes the tests liberal; over-estimating only
    costs power. (The level test does not use it: `drift_decision`.) `lag1`: x's
    `lag1_r`, if already computed.
    """
    r1, total = lag1 if lag1 is not None else lag1_r(x, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_period = np.maximum(total / 2.0, 4.0)
        corrected = r1 + (1.0 + 3.0 * r1) / per_period
        se = np.sqrt(np.maximum(1.0 - corrected**2, 0.0) / np.maximum(total, 4))
    return np.clip(corrected + margin * se, 0.0, MAX_PHI)


def _lag_counts(present: np.ndarray, m: int, contiguous: np.ndarray) -> np.ndarray:
    """Pair counts by lag: (rows x 3 x T) for (ref-ref, win-win, ref-win) pairs.

    Computed once per distinct pattern of present days (most products share a few).
    """
    counts, inverse = _lag_patterns(present, m, contiguous)
    return counts[inverse]


def _lag_patterns(
    present: np.ndarray, m: int, contiguous: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(pair counts by lag of each distinct pattern of present days, each row's pattern)."""
    key = np.concatenate([present, contiguous[:, None]], axis=1)
    packed = np.packbits(key, axis=1)
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    return _lag_counts_rows(present[first], m, contiguous[first]), inverse.ravel()


def _lag_counts_rows(present: np.ndarray, m: int, contiguous: np.ndarray) -> np.ndarray:
    """(rows x 3 x T) pair counts by lag k of each row's present days: both in the
    reference (columns < m), both in the window, one in each (reference first; 0 for
    rows whose periods are not `contiguous`).

    The auto- and cross-correlations of the two periods' 0/1 indicators, all lags at
    once by FFT (zero-padded: no wrap-around) and rounded: the counts are whole numbers
    up to T, the FFT's rounding error ~1e-13, so they are exact (the same doubles as
    counting pair by pair, one lag at a time, which was a Python loop over T)."""
    rows, width = present.shape
    if not rows:
        return np.zeros((0, 3, width))
    size = 1 << int(2 * width - 1).bit_length()  # >= 2 T: no circular overlap
    p = present.astype(np.float64)
    ref, win = p.copy(), p.copy()
    ref[:, m:] = 0.0
    win[:, :m] = 0.0
    f_ref = np.fft.rfft(ref, size, axis=1)
    f_win = np.fft.rfft(win, size, axis=1)
    out = np.empty((rows, 3, width))
    out[:, 0] = np.fft.irfft(f_ref * np.conj(f_ref), size, axis=1)[:, :width]
    out[:, 1] = np.fft.irfft(f_win * np.conj(f_win), size, axis=1)[:, :width]
    out[:, 2] = np.fft.irfft(np.conj(f_ref) * f_win, size, axis=1)[:, :width]
    out = np.abs(np.rint(out))  # exact whole numbers (abs: no -0.0)
    out[~np.asarray(contiguous, bool), 2, :] = 0.0
    return out


def _mean_change(
    x: np.ndarray,
    m: int,
    phis: np.ndarray,
    counts: np.ndarray,
    spent: np.ndarray,
    periods: tuple[_MeanSd, _MeanSd] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(diff, se, dof) of the window mean minus the reference mean of AR(1) series x;
    `phis` (rows x K) the coefficients to assume, se and dof (rows x K) for each.

    Var(mean_w - mean_r) = sigma^2 (S_ww / n_w^2 + S_rr / n_r^2 - 2 S_rw / (n_r n_w)),
    S the sums of phi^|i-j| over the pairs of present days; sigma^2 from the squares
    around the period means, whose expectation is sigma^2 (n - S / n) in each period
    (both periods constant: `CONSTANT_VARIANCE`). The degrees of freedom are those of
    that variance under AR(1): (n - 2 - spent) (1 - phi^2) / (1 + phi^2). Row-wise sums
    only: a row's values never depend on the other rows. `periods`: x's
    `_period_stats`, if already computed.
    """
    width = x.shape[1]
    (n_r, mean_r, sd_r), (n_w, mean_w, sd_w) = periods or _period_stats(x, m)
    lags = np.arange(width)
    weight = np.full(width, 2.0)
    weight[0] = 1.0
    rows, k_count = phis.shape
    se = np.empty((rows, k_count))
    dof = np.empty((rows, k_count))
    with np.errstate(invalid="ignore", divide="ignore"):
        ss = np.nan_to_num(sd_r**2 * (n_r - 1)) + np.nan_to_num(sd_w**2 * (n_w - 1))
        diff = mean_w - mean_r
        for k in range(k_count):
            phi = phis[:, k]
            powers = phi[:, None] ** lags[None, :]
            s_rr = (counts[:, 0] * (powers * weight)).sum(axis=1)
            s_ww = (counts[:, 1] * (powers * weight)).sum(axis=1)
            s_rw = (counts[:, 2] * powers).sum(axis=1)
            expected = (n_r - s_rr / n_r) + (n_w - s_ww / n_w) - spent
            sigma2 = np.where(ss > 0, ss / expected, CONSTANT_VARIANCE)
            q = s_ww / n_w**2 + s_rr / n_r**2 - 2.0 * s_rw / (n_r * n_w)
            se[:, k] = np.where(expected > 0, np.sqrt(sigma2 * q), np.nan)
            dof[:, k] = (n_r + n_w - 2 - spent) * (1 - phi**2) / (1 + phi**2)
    return diff, se, dof


def _pattern_sums(
    patterns: tuple[np.ndarray, np.ndarray], grid: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S_rr, S_ww, S_rw) of every row (rows x len(grid)): the sums of phi^|i-j| over the
    pairs of present days, computed once per distinct pattern (`_lag_patterns`) with
    row-wise sums (a row's values never depend on the other rows)."""
    counts_u, inverse = patterns
    weight = np.full(width, 2.0)
    weight[0] = 1.0
    powers = np.asarray(grid, dtype=np.float64)[:, None] ** np.arange(width)[None, :]  # K x T
    s_rr = np.stack([(counts_u[:, 0] * (p * weight)).sum(axis=1) for p in powers], axis=1)
    s_ww = np.stack([(counts_u[:, 1] * (p * weight)).sum(axis=1) for p in powers], axis=1)
    s_rw = np.stack([(counts_u[:, 2] * p).sum(axis=1) for p in powers], axis=1)
    return s_rr[inverse], s_ww[inverse], s_rw[inverse]


def _mean_change_grid(
    x: np.ndarray,
    m: int,
    grid: np.ndarray,
    patterns: tuple[np.ndarray, np.ndarray],
    spent: np.ndarray,
    sums: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    periods: tuple[_MeanSd, _MeanSd] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_mean_change` at every phi of `grid` for every row: the sums of phi^|i-j| are
    computed once per distinct pattern of present days (`_pattern_sums`, or given);
    `periods`: x's `_period_stats`, if already computed."""
    (n_r, mean_r, sd_r), (n_w, mean_w, sd_w) = periods or _period_stats(x, m)
    if sums is None:
        sums = _pattern_sums(patterns, grid, x.shape[1])
    phi = np.asarray(grid, dtype=np.float64)[None, :]
    se, dof = _variance_from_sums(
        n_r[:, None], n_w[:, None], spent[:, None], (sd_r[:, None], sd_w[:, None]), sums, phi
    )
    return mean_w - mean_r, se, dof


def _variance_from_sums(
    nr: np.ndarray,
    nw: np.ndarray,
    sp: np.ndarray,
    sds: tuple[np.ndarray, np.ndarray],
    sums: tuple[np.ndarray, np.ndarray, np.ndarray],
    phi: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(se, dof) of the mean change given the sums of the errors' correlations over the
    pairs of present days (`LEVEL_VARIANCE`: separate or pooled); `phi` the fast AR(1)
    coefficient (the degrees of freedom's)."""
    if LEVEL_VARIANCE == "separate":
        return _separate_variance(nr, nw, sp, sds, sums, phi)
    sd_r, sd_w = sds
    s_rr, s_ww, s_rw = sums
    with np.errstate(invalid="ignore", divide="ignore"):
        ss = np.nan_to_num(sd_r**2 * (nr - 1)) + np.nan_to_num(sd_w**2 * (nw - 1))
        expected = (nr - s_rr / nr) + (nw - s_ww / nw) - sp
        sigma2 = np.where(ss > 0, ss / expected, CONSTANT_VARIANCE)
        q = s_ww / nw**2 + s_rr / nr**2 - 2.0 * s_rw / (nr * nw)
        se = np.where(expected > 0, np.sqrt(sigma2 * q), np.nan)
        dof = (nr + nw - 2 - sp) * (1 - phi**2) / (1 + phi**2)
    return se, dof


def placebo_ratio(ref: np.ndarray, block: int) -> np.ndarray:
    """Per row of the reference (NaN: missing): its last B = m // block blocks of `block`
    days, the variance of the block means times the block's size over the variance
    within the blocks (about 1 for independent errors, (1 + phi) / (1 - phi) for an
    AR(1), far more with a slow component). NaN where B < 2, a block has fewer than two
    errors or the blocks are constant."""
    rows, m = ref.shape
    blocks = m // max(block, 1)
    out = np.full(rows, np.nan)
    if blocks < 2 or not rows:
        return out
    seg = ref[:, m - blocks * block :].reshape(rows, blocks, block)
    ok = ~np.isnan(seg)
    c = ok.sum(axis=2).astype(np.float64)
    filled = np.where(ok, seg, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = filled.sum(axis=2) / c
        grand = (c * means).sum(axis=1) / c.sum(axis=1)
        between = (c * (means - grand[:, None]) ** 2).sum(axis=1) / (blocks - 1)
        dev = np.where(ok, seg - means[:, :, None], 0.0)
        within = (dev * dev).sum(axis=(1, 2)) / (c.sum(axis=1) - blocks)
        ratio = between / within
    good = (c.min(axis=1) >= 2) & (within > 0)
    out[good] = ratio[good]
    return out


def _separate_variance(
    nr: np.ndarray,
    nw: np.ndarray,
    sp: np.ndarray,
    sds: tuple[np.ndarray, np.ndarray],
    sums: tuple[np.ndarray, np.ndarray, np.ndarray],
    phi: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(se, dof) of the mean change with each period's own sigma^2 (LEVEL_VARIANCE
    "separate"): sigma_p^2 from the squares around period p's mean over their AR(1)
    expectation (n_p - S_pp / n_p, the spent parameters shared by length); Var =
    sigma_w^2 S_ww / n_w^2 + sigma_r^2 S_rr / n_r^2 - 2 sigma_r sigma_w S_rw / (n_r n_w);
    Welch-Satterthwaite degrees of freedom from the two terms, each period's own
    (n_p - 1 - spent_p)(1 - phi^2)/(1 + phi^2)."""
    sd_r, sd_w = sds
    s_rr, s_ww, s_rw = sums
    with np.errstate(invalid="ignore", divide="ignore"):
        ss_r, ss_w = np.nan_to_num(sd_r**2 * (nr - 1)), np.nan_to_num(sd_w**2 * (nw - 1))
        sp_r, sp_w = sp * nr / (nr + nw), sp * nw / (nr + nw)
        e_r, e_w = nr - s_rr / nr - sp_r, nw - s_ww / nw - sp_w
        v_r = np.where(ss_r > 0, ss_r / e_r, CONSTANT_VARIANCE)
        v_w = np.where(ss_w > 0, ss_w / e_w, CONSTANT_VARIANCE)
        a, b = v_r * s_rr / nr**2, v_w * s_ww / nw**2
        c = 2.0 * np.sqrt(v_r * v_w) * s_rw / (nr * nw)
        se = np.where((e_r > 0) & (e_w > 0), np.sqrt(np.maximum(a + b - c, 1e-300)), np.nan)
        f = (1 - phi**2) / (1 + phi**2)
        df_r = np.maximum((nr - 1 - sp_r) * f, 1.0)
        df_w = np.maximum((nw - 1 - sp_w) * f, 1.0)
        dof = (a + b) ** 2 / (a**2 / df_r + b**2 / df_w)
    return se, dof


def _mean_change_t(
    x: np.ndarray, m: int, phi: np.ndarray, counts: np.ndarray, spent: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(t, dof) of the window mean minus the reference mean at one phi per row."""
    diff, se, dof = _mean_change(x, m, phi[:, None], counts, spent)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = diff / se[:, 0]
    return t, dof[:, 0]


def row_nanmedian(x: np.ndarray) -> np.ndarray:
    """Each row's median over its non-NaN values (NaN for a row without any): the same
    doubles as `np.nanmedian(x, axis=1)` — the mean of the two middle values, (a + b) / 2,
    a middle value itself for an odd count — without its masked-array path (a sort along
    the rows instead; a seventh of the drift tests' time)."""
    x = np.asarray(x, dtype=np.float64)
    srt = np.sort(x, axis=1)  # NaN last
    count = np.count_nonzero(~np.isnan(x), axis=1)
    rows = np.arange(len(x))
    low = np.maximum((count - 1) // 2, 0)
    high = np.minimum(count // 2, max(x.shape[1] - 1, 0))
    if not x.shape[1]:
        return np.full(len(x), np.nan)
    with np.errstate(invalid="ignore"):
        median = (srt[rows, low] + srt[rows, high]) / 2.0
    return np.where(count > 0, median, np.nan)


def _dense_ks(x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the two-sample KS statistic and Wasserstein distance of columns < m
    (reference) against the rest (window), NaN ignored; one sort along the rows."""
    order = np.argsort(x, axis=1)  # NaN last
    v = np.take_along_axis(x, order, axis=1)
    is_win = order >= m
    ok = ~np.isnan(v)
    n_w = (is_win & ok).sum(axis=1)
    n_r = (~is_win & ok).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f_w = np.cumsum(is_win & ok, axis=1) / n_w[:, None]
        f_r = np.cumsum(~is_win & ok, axis=1) / n_r[:, None]
        gap = np.abs(f_w - f_r)
        # Evaluate after the last of a run of ties (as scipy does); NaN ends every row.
        step = np.zeros_like(v)
        step[:, :-1] = v[:, 1:] - v[:, :-1]
        run_end = ok.copy()
        run_end[:, :-1] &= ~(step[:, :-1] == 0)
        d = np.where(run_end, gap, 0.0).max(axis=1)
        w1 = np.where(ok & (step > 0), gap * step, 0.0).sum(axis=1)
    empty = (n_w == 0) | (n_r == 0)
    d[empty] = np.nan
    w1[empty] = np.nan
    return d, w1


def drift_tests(
    ref: np.ndarray,
    win: np.ndarray,
    *,
    contiguous: np.ndarray,
    weekday: np.ndarray | None = None,
    min_samples: int = 7,
) -> DriftTests:
    """Test every group's window errors against its reference errors for drift.

    `ref` (groups x m) and `win` (groups x n) hold each group's errors in time order, one
    column a day, NaN where a day has none. `contiguous[g]` says that group g's reference
    ends the day before its window starts (the previous window: one series); otherwise
    the reference is a separate series (the holdout), taken in its given order.
    `weekday` (m + n,) is the weekday of every column for contiguous groups (None: not
    known); with it, contiguous groups with at least 28 errors are tested after removing
    their weekday means (pooled over both periods, so a change between them stays).

    Per group (`DriftTests`; the p-values that need every group are `drift_decision`'s):

    - level: the window mean minus the reference mean, with its exact AR(1) standard
      error (both periods' covariances included) and effective degrees of freedom at
      every phi of `PHI_GRID`, and the errors' r1 (the evidence about phi);
    - scale: the same mean change of the absolute deviations from each period's median
      (Brown-Forsythe) of the prewhitened errors, with their own cautious AR(1)
      coefficient (spread clusters in time);
    - shape: two-sample KS of the prewhitened errors x_t - phi x_(t-1) (around the
      common mean), its asymptotic p-value on sizes shrunk by the innovations' own
      remaining lag-1 autocorrelation (reported only).

    Effects: bias shift and spread ratio on the raw errors; the Wasserstein distance of
    the prewhitened errors over their reference sd for shape.
    """
    ref = np.asarray(ref, dtype=np.float64)
    win = np.asarray(win, dtype=np.float64)
    if ref.ndim != 2 or win.ndim != 2 or ref.shape[0] != win.shape[0]:
        raise ValueError(
            f"ref and win must be 2-D with one row a group, got {ref.shape} and {win.shape}"
        )
    if min_samples < 2:
        raise ValueError(f"min_samples must be >= 2, got {min_samples}")
    groups, m = ref.shape
    n = win.shape[1]
    contiguous = np.asarray(contiguous, dtype=bool)
    if contiguous.shape != (groups,):
        raise ValueError(f"contiguous must have one value a group ({groups})")
    if weekday is not None and len(weekday) != m + n:
        raise ValueError(f"weekday must have one value a column ({m + n}), got {len(weekday)}")
    if m < 1 or n < 1:
        raise ValueError("ref and win need at least one column each")

    n_ref, mean_ref, sd_ref = _nan_mean_sd(ref)
    n_win, mean_win, sd_win = _nan_mean_sd(win)
    with np.errstate(invalid="ignore", divide="ignore"):
        bias_shift = mean_win - mean_ref
        bias_shift_sd = np.where(sd_ref > 0, bias_shift / sd_ref, np.nan)
        spread_ratio = np.where(sd_ref > 0, sd_win / sd_ref, np.nan)
    tested = (n_ref >= min_samples) & (n_win >= min_samples)

    raw = np.concatenate([ref, win], axis=1)
    x = raw.copy()
    present = ~np.isnan(x)
    total = n_ref + n_win
    spent = np.zeros(groups)
    if weekday is not None:
        # Weekday means (pooled over both periods) removed: 6 more parameters.
        rows = np.flatnonzero(contiguous & (total >= MIN_WEEKDAY_ADJUST))
        if len(rows):
            wd = np.asarray(weekday, dtype=np.int64) % 7
            ok = present[rows]
            filled = np.where(ok, x[rows], 0.0)
            # Row-wise sums (not a matrix product): a row's result never depends on the
            # other rows (the check's per-product phase is partition-invariant).
            sums = np.stack([filled[:, wd == d].sum(axis=1) for d in range(7)], axis=1)
            counts = np.stack([ok[:, wd == d].sum(axis=1) for d in range(7)], axis=1).astype(
                np.float64
            )
            overall = sums.sum(axis=1) / counts.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                wmean = np.where(counts > 0, sums / counts, 0.0) - overall[:, None]
            x[rows] = x[rows] - wmean[:, wd]
            spent[rows] = 6.0

    patterns = _lag_patterns(present, m, contiguous)
    counts = patterns[0][patterns[1]]
    from forecastguard.health import slow_table
    from forecastguard.health.phi_table import PHI_GRID

    # Each array's per-period means and sds are computed once and handed on (the same
    # doubles as each function computing its own).
    x_periods = _period_stats(x, m)
    x_lag1 = lag1_r(x, m, x_periods)
    r1, n_total = x_lag1
    grid = np.append(PHI_GRID, slow_table.PHI_SLOW)
    k = len(PHI_GRID)
    all_sums = _pattern_sums(patterns, grid, m + n)
    sums = tuple(s[:, :k] for s in all_sums)
    level_diff, level_se, level_dof = _mean_change_grid(
        x, m, PHI_GRID, patterns, spent, sums, x_periods
    )
    level_diff[~tested] = np.nan
    level_sd_ref, level_sd_win = x_periods[0][2], x_periods[1][2]
    placebo = placebo_ratio(x[:, :m], n)
    config = slow_table.configuration(n, m)
    enough = n_total >= slow_table.MIN_PRESENT * slow_table.configuration_days(max(config, 0))
    placebo_config = np.where((config >= 0) & enough & np.isfinite(placebo), config, -1)

    # Prewhitened errors around the common mean (one lattice for discrete errors), with
    # the cautious coefficient (over-whitening leaves negative autocorrelation: safe).
    link = present[:, 1:] & present[:, :-1]
    link[:, m - 1] &= contiguous

    def prewhiten(
        series: np.ndarray, lag1: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        phi_w = ar1_coefficient(series, m, WHITEN_MARGIN, lag1)
        _, common, _ = _nan_mean_sd(series)
        c = np.where(present, series - common[:, None], 0.0)
        out = c.copy()
        out[:, 1:] = np.where(link, c[:, 1:] - phi_w[:, None] * c[:, :-1], c[:, 1:])
        return np.where(present, out, np.nan)

    # Scale: Brown-Forsythe on the prewhitened raw errors (a weekday adjustment would
    # carry the window's spread into the reference), its own AR(1) correction.
    v = prewhiten(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        med_r = row_nanmedian(v[:, :m])
        med_w = row_nanmedian(v[:, m:])
    dev = np.abs(np.concatenate([v[:, :m] - med_r[:, None], v[:, m:] - med_w[:, None]], axis=1))
    dev_periods = _period_stats(dev, m)
    phi_dev = ar1_coefficient(dev, m, DEV_MARGIN, lag1_r(dev, m, dev_periods))
    scale_diff, scale_se, scale_dof = _mean_change(
        dev, m, phi_dev[:, None], counts, np.zeros(groups), dev_periods
    )
    scale_ref = dev_periods[0][1]
    scale_diff[~tested] = np.nan

    # Shape: KS of the prewhitened weekday-adjusted errors.
    u = prewhiten(x, x_lag1)
    u_periods = _period_stats(u, m)
    rho = ar1_coefficient(u, m, PHI_MARGIN, lag1_r(u, m, u_periods))
    d_stat, w1 = _dense_ks(u, m)
    from scipy.special import kolmogorov

    shrink = (1.0 - rho) / (1.0 + rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        ea, eb = n_win * shrink, n_ref * shrink
        p_shape = kolmogorov(d_stat * np.sqrt(ea * eb / (ea + eb)))
    p_shape[~tested] = np.nan
    sd_u = u_periods[0][2]
    with np.errstate(invalid="ignore", divide="ignore"):
        shape_effect = np.where(sd_u > 0, w1 / sd_u, np.nan)
    return DriftTests(
        n_ref=n_ref,
        n_win=n_win,
        r1=r1,
        n_total=n_total.astype(np.float64),
        level_diff=level_diff,
        level_se=level_se,
        level_dof=level_dof,
        scale_diff=scale_diff,
        scale_se=scale_se[:, 0],
        scale_dof=scale_dof[:, 0],
        scale_ref=scale_ref,
        p_shape=p_shape,
        bias_shift=bias_shift,
        bias_shift_sd=bias_shift_sd,
        sd_ref=np.where(sd_ref > 0, sd_ref, np.sqrt(CONSTANT_VARIANCE)),
        spread_ratio=spread_ratio,
        shape_effect=shape_effect,
        level_sd_ref=level_sd_ref,
        level_sd_win=level_sd_win,
        level_spent=spent,
        sums_rr=sums[0],
        sums_ww=sums[1],
        sums_rw=sums[2],
        slow_rr=all_sums[0][:, k],
        slow_ww=all_sums[1][:, k],
        slow_rw=all_sums[2][:, k],
        placebo=placebo,
        placebo_config=placebo_config.astype(np.float64),
    )


def npmle_prior(
    likelihood: np.ndarray, iterations: int = EM_ITERATIONS, weights: np.ndarray | None = None
) -> np.ndarray:
    """The nonparametric maximum-likelihood distribution over a grid (EM from a flat
    start) given each group's likelihood of its evidence under each grid value.

    Without `weights` the distinct rows are found here; with them, the rows are taken
    as distinct, each standing for `weights` groups."""
    k = likelihood.shape[1]
    prior = np.full(k, 1.0 / k)
    if not len(likelihood):
        return prior
    if weights is None:
        # Products share a few hundred distinct likelihood rows (tabulated by r1 bin and
        # length): EM on those, weighted by how many products have each.
        rows, count = np.unique(likelihood, axis=0, return_counts=True)
    else:
        rows, count = likelihood, np.asarray(weights, dtype=np.float64)
    lik = rows / rows.max(axis=1, keepdims=True)
    weight = count / count.sum()
    for _ in range(iterations):
        post = lik * prior
        post /= post.sum(axis=1, keepdims=True)
        prior = weight @ post
    return prior


def slow_likelihood(
    tests: DriftTests, idx: np.ndarray, placebo: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(distinct likelihood rows (u x K * W), each group's row (len(idx))): the
    probability of a group's evidence under each (phi, omega), flat index k * W + w.

    Groups with placebo evidence (if `placebo`): the joint table of (r1, placebo ratio)
    (`slow_table`); the others: the r1 table (`phi_table`), the same for every omega.
    """
    from forecastguard.health import phi_table, slow_table

    w = len(slow_table.OMEGA_GRID)
    config = np.nan_to_num(tests.placebo_config[idx], nan=-1.0).astype(np.int64)
    if not placebo:
        config = np.full(len(idx), -1, np.int64)
    joint = slow_table.cells(config, tests.r1[idx], tests.placebo[idx])
    plain = phi_table.cells(tests.r1[idx], tests.n_total[idx])
    key = np.where(joint >= 0, joint, -1 - plain)
    ukey, inverse = np.unique(key, return_inverse=True)
    rows = np.empty((len(ukey), len(phi_table.PHI_GRID) * w))
    has = ukey >= 0
    rows[has] = slow_table.likelihood(ukey[has])
    rows[~has] = np.repeat(phi_table.cell_likelihood(-1 - ukey[~has]), w, axis=1)
    return rows, inverse.ravel()


def slow_prior(
    rows: np.ndarray, inverse: np.ndarray, slow: bool = True, iterations: int = EM_ITERATIONS
) -> np.ndarray:
    """The distribution of (phi, omega) across groups (K x W): the NPMLE on the groups'
    likelihood rows, with fewer than MIN_PRIOR_PRODUCTS groups its phi margin shrunk
    towards a flat one; without `slow` all of it at omega 0 (the AR(1) model)."""
    from forecastguard.health.slow_table import OMEGA_GRID

    n = len(inverse)
    w = len(OMEGA_GRID)
    fit = npmle_prior(rows, iterations, np.bincount(inverse, minlength=len(rows)))
    fit = fit.reshape(-1, w)
    k = len(fit)
    margin = fit.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        given = np.where(margin[:, None] > 0, fit / margin[:, None], 0.0)
    given[margin <= 0, 0] = 1.0
    if n < MIN_PRIOR_PRODUCTS:
        margin = (n * margin + (MIN_PRIOR_PRODUCTS - n) / k) / MIN_PRIOR_PRODUCTS
    if not slow:
        given = np.zeros_like(given)
        given[:, 0] = 1.0
    return margin[:, None] * given


def _slow_cells(
    tests: DriftTests, rows: np.ndarray, col: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(se, dof) of the level change of groups `rows` at flat cells `col` (k * W + w):
    the covariance (1 - omega) phi^|i-j| + omega PHI_SLOW^|i-j| enters the sums of the
    exact variance as it is (the variance is linear in the covariances)."""
    from forecastguard.health.phi_table import PHI_GRID
    from forecastguard.health.slow_table import OMEGA_GRID

    w = len(OMEGA_GRID)
    k, o = col // w, OMEGA_GRID[col % w]
    f = 1.0 - o
    sums = (
        f * tests.sums_rr[rows, k] + o * tests.slow_rr[rows],
        f * tests.sums_ww[rows, k] + o * tests.slow_ww[rows],
        f * tests.sums_rw[rows, k] + o * tests.slow_rw[rows],
    )
    sds = (tests.level_sd_ref[rows], tests.level_sd_win[rows])
    return _variance_from_sums(
        tests.n_ref[rows], tests.n_win[rows], tests.level_spent[rows], sds, sums, PHI_GRID[k]
    )


_CELL_BLOCK = 1 << 13  # (group, grid cell) pairs a call of `_slow_cells` in `drift_decision`
CENTRAL_Z = 2.0  # central matching fits the z-values' density on |z| <= this
_CENTRAL_BINS = 20


def central_null_sd(z: np.ndarray) -> float:
    """Efron's empirical null spread by central matching, centre fixed at 0.

    The density of the z-values near 0 is mostly the null's, whatever the few changed
    products do in the tails: log f(z) = a - z^2 / (2 sigma^2) is fitted to the
    histogram of |z| on [0, CENTRAL_Z] (Poisson regression of the bin counts on the
    squared bin centres, by Newton's method). A median-based spread would be inflated
    by the changed products themselves (13 % with a tenth of the products shifted).
    NaN when the fit finds no downward curvature.
    """
    a = np.abs(z[np.isfinite(z)])
    edges = np.linspace(0.0, CENTRAL_Z, _CENTRAL_BINS + 1)
    counts, _ = np.histogram(a, bins=edges)
    if counts.sum() < 20:
        return float("nan")
    c2 = ((edges[:-1] + edges[1:]) / 2.0) ** 2
    design = np.stack([np.ones_like(c2), c2], axis=1)
    beta = np.array([np.log(max(counts.mean(), 1.0)), -0.5])
    for _ in range(50):
        mu = np.exp(design @ beta)
        grad = design.T @ (counts - mu)
        hess = design.T @ (design * mu[:, None])
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.abs(step).max() < 1e-10:
            break
    b = beta[1]
    return float(np.sqrt(-0.5 / b)) if b < 0 else float("nan")


def _shifted_t(diff: np.ndarray, se: np.ndarray, dof: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """P(|D| >= |diff|) when D = delta + se T_dof (the boundary of |mean change| <= delta),
    the interval null's p-value; NaN where an input is."""
    from scipy.special import stdtr

    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.abs(diff)
        p = stdtr(dof, -(a - delta) / se) + stdtr(dof, -(a + delta) / se)
    return np.clip(p, _TINY, 1.0)


def drift_decision(
    tests: DriftTests, alpha: float, min_effect: float, null_floor: float = 1.0
) -> DriftDecision:
    """The drift p-values of all groups together, BH across them, the kind found.

    - level: the errors are an AR(1) (phi unknown per group) plus a slow AR(1)
      (`slow_table.PHI_SLOW`) holding a share omega of the variance; the distribution
      of (phi, omega) across groups is fitted on the groups' r1 and placebo ratio
      (`slow_prior`, their joint likelihood tabulated in `slow_table`; without placebo
      evidence the r1 likelihood of `phi_table`) and each group's p-value is the
      posterior mixture, over the (phi, omega) grid, of its t p-values (`_slow_cells`);
      with fewer than MIN_PRIOR_PRODUCTS groups the phi margin is shrunk towards a flat
      one, with fewer with placebo evidence the test is the AR(1) model (omega 0);
      what the AR(1) model still misses (AR(2), heavy tails, a shock common to all
      products) is absorbed by an empirical null: the spread of the mixture's z-values
      by central matching, floored at `null_floor` (from MIN_NULL_PRODUCTS groups;
      below, 1). A change shared by most groups is absorbed into that spread too,
      which is why it is published.
    - scale: the Brown-Forsythe mean change at its cautious phi, the same empirical null.
    - both as interval nulls: a level change of at most `min_effect` reference sd, a
      spread ratio within [1/(1 + s), 1 + s], s = SPREAD_EFFECT_FACTOR * `min_effect`
      (shifted-t p-values).
    - one p-value a group: weighted Bonferroni (DRIFT_WEIGHTS), BH at `alpha`; the kind
      is the first component whose weighted p-value passes the BH cutoff.
    """
    from scipy.special import stdtr

    from forecastguard.health.phi_table import PHI_GRID
    from forecastguard.health.slow_table import OMEGA_GRID

    g = len(tests.level_diff)
    tested = tests.tested & np.isfinite(tests.level_se).any(axis=1)
    idx = np.flatnonzero(tested)
    n = len(idx)
    k, w = len(PHI_GRID), len(OMEGA_GRID)
    # The slow component needs MIN_PRIOR_PRODUCTS groups with placebo evidence to be
    # fitted; with fewer (a small catalogue, a reference shorter than two windows) the
    # test is the AR(1) model of before, its prior over phi shrunk as before.
    n_placebo = int((np.nan_to_num(tests.placebo_config[idx], nan=-1.0) >= 0).sum())
    slow = n_placebo >= MIN_PRIOR_PRODUCTS
    rows, inverse = slow_likelihood(tests, idx, slow)
    joint = slow_prior(rows, inverse, slow)
    prior = joint.sum(axis=1)
    post = rows[inverse]
    post *= joint.ravel()  # in place: one products x cells array, not two
    post /= np.maximum(post.sum(axis=1, keepdims=True), _TINY)
    by_phi = post.reshape(n, k, w)
    phi_mean = np.full(g, np.nan)
    phi_mean[idx] = by_phi.sum(axis=2) @ PHI_GRID
    slow_share = np.full(g, np.nan)
    slow_share[idx] = by_phi.sum(axis=1) @ OMEGA_GRID
    # The mixtures over the grid skip the cells a product's posterior excludes.
    row, col = np.nonzero(post > _NEGLIGIBLE)
    wt = post[row, col]
    del post, by_phi  # (products x cells: freed before the p-values' working memory)
    grow = idx[row]
    a = np.abs(tests.level_diff[grow])
    # A block of cells at a time (elementwise: the same doubles), so the variance's
    # temporaries do not all exist at once (the check's global step's memory peak).
    se_k, dof_k = np.empty(len(grow)), np.empty(len(grow))
    for lo in range(0, len(grow), _CELL_BLOCK):
        part = slice(lo, lo + _CELL_BLOCK)
        se_k[part], dof_k[part] = _slow_cells(tests, grow[part], col[part])
    dof_k = np.maximum(dof_k, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # A cell at which the variance cannot be estimated (too few errors) counts as 1.
        p0_k = np.nan_to_num(2.0 * stdtr(dof_k, -a / se_k), nan=1.0)
    p0 = np.bincount(row, weights=wt * p0_k, minlength=n)
    sd_level = _null_sd(p0, n, null_floor)
    delta = min_effect * tests.sd_ref[grow]
    shifted = np.nan_to_num(_shifted_t(a, se_k * sd_level, dof_k, delta), nan=1.0)
    p_level = np.full(g, np.nan)
    p_level[idx] = np.clip(np.bincount(row, weights=wt * shifted, minlength=n), _TINY, 1.0)

    s_diff, s_se = tests.scale_diff[idx], tests.scale_se[idx]
    s_dof = np.maximum(tests.scale_dof[idx], 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ps0 = 2.0 * stdtr(s_dof, -np.abs(s_diff) / s_se)
    sd_scale = _null_sd(ps0, n, null_floor)
    wider = s_diff >= 0
    ref_dev = tests.scale_ref[idx]
    s_min = SPREAD_EFFECT_FACTOR * min_effect
    s_delta = np.where(wider, s_min, s_min / (1.0 + s_min)) * ref_dev
    p_scale = np.full(g, np.nan)
    p_scale[idx] = _shifted_t(s_diff, s_se * sd_scale, s_dof, s_delta)
    p_scale[idx[~np.isfinite(s_se)]] = np.nan

    weights = np.asarray(DRIFT_WEIGHTS[:2])
    parts = np.stack([p_level, p_scale], axis=1) / weights
    has = tested & ~np.isnan(parts).all(axis=1)
    best = np.where(has, np.argmin(np.where(np.isnan(parts), np.inf, parts), axis=1), -1)
    pvalue = np.full(g, np.nan)
    pvalue[has] = np.minimum(parts[has, best[has]], 1.0)
    qvalue = benjamini_hochberg(pvalue)
    drift = qvalue <= alpha
    cutoff = bh_cutoff(pvalue, alpha)
    with np.errstate(invalid="ignore"):
        passes = parts <= cutoff
    kind = np.where(drift & passes.any(axis=1), np.argmax(passes, axis=1), -1)
    return DriftDecision(
        p_level=p_level,
        p_scale=p_scale,
        p_shape=tests.p_shape,
        pvalue=pvalue,
        test=best,
        qvalue=qvalue,
        drift=drift,
        kind=kind,
        null_sd_level=sd_level,
        null_sd_scale=sd_scale,
        prior=prior,
        phi_mean=phi_mean,
        slow_prior=joint.sum(axis=0),
        slow_share=slow_share,
        slow_fitted=slow,
    )


def _null_sd(p: np.ndarray, n: int, floor: float) -> float:
    """The empirical null spread of two-sided p-values' z-values (1 below
    MIN_NULL_PRODUCTS groups), at least `floor`."""
    from scipy.special import ndtri

    if n < MIN_NULL_PRODUCTS:
        return max(1.0, floor)
    z = -ndtri(np.clip(p, _TINY, 1.0) / 2.0)
    spread = central_null_sd(z)
    return max(spread, floor) if np.isfinite(spread) else max(1.0, floor)


def bh_cutoff(pvalues: np.ndarray, alpha: float) -> float:
    """The Benjamini-Hochberg rejection threshold: the largest p_(i) <= alpha i / m (or 0)."""
    p = np.sort(np.asarray(pvalues, dtype=np.float64)[~np.isnan(pvalues)])
    if not len(p):
        return 0.0
    ok = np.flatnonzero(p <= alpha * np.arange(1, len(p) + 1) / len(p))
    return float(p[ok[-1]]) if len(ok) else 0.0

"""Coverage of the served forecast intervals, per product, valid under serial dependence.

The trainer serves P10/P50/P90 (issue 27). An interval calibrated on a long history is
a fixed yardstick: if a product's error spread doubles, its 80 % interval covers about
47 % of days instead of 80 %, which a 30-day window shows even though its errors are
autocorrelated. Hits (the sale inside [P10, P90]) are autocorrelated when the errors
are, so the binomial variance `p(1-p)/n` is too small; it is multiplied by the
variance factor `1 + 2 Σ_j (1 - j/n) ρ_h(phi^j)` (an effective sample size `n / vf`),
where `ρ_h(r)` is the correlation of two hits whose errors are Gaussian with
correlation `r`: the indicator of a central interval is an even function of the error,
so in its Hermite expansion `Σ a_k He_k` only even terms remain and
`ρ_h(r) = Σ_k a_k² r^k / (p(1-p))` (about 0.16 at r 0.5, against the bound r² = 0.25).
`phi` is each product's lag-1 autocorrelation of its errors over every day read (the
reference days and the window: more days make it less noisy; a changed spread does not
change it), bias-corrected (Kendall: `+ (1 + 3 phi)/n`) and clipped to [0, 0.95].

The count of hits is judged by its tails, not by a normal approximation: a sum of 30
positively dependent hits is skewed, and at the p-values that pass BH over 1,000
products (1e-4 .. 1e-3) the normal tail with a quarter-hit continuity correction was
10-20 times too small (too many alarms on AR(2) and t(3) errors). The count is taken
as beta-binomial with the same mean and the inflated variance (its tail matches the
simulated Gaussian AR(1) count's to a few per cent down to 1e-4), mid-p. The test is
two-sided: too narrow counts a sale on a bound as inside (`lower <= y <= upper`), too
wide as outside (`lower < y < upper`), so each side holds for any distribution whose
10 % and 90 % quantiles the bounds are, counts included (an intermittent product with
P10 = 0 is not "too wide" because of its zero days). A too-wide interval (coverage far
above nominal: stock that ties up money) is reported as well as a too-narrow one.
What the Gaussian AR(1) hit model misses (heavier tails cluster misses: t(3) errors
give a variance factor 1.61 where the model gives 1.41; AR(2)) is absorbed in
`global_phase` by an empirical null (`calibrated_pvalues`): the spread of the
products' coverage z-values by central matching, floored at 1, multiplies the
variance factor, as the drift tests do.

The hit count throws away how far outside the interval a sale fell. The scale test
(`scale_tests`) uses it: each window day's distance from the interval's midpoint in
half-widths, `u = (y - mid) / half`, squared and winsorised at SCALE_CAP² (a t(3)'s rare
outliers do not dominate; a doubled spread stays mostly below it), averaged over the
window, against what the same average is when the interval is calibrated. That depends
on the errors' shape, which the interval does not give, so it is taken from the
product's reference errors standardised by their own 80 % quantile of |e| (the shape
only: their scale drops out, so the interval stays the yardstick). The ratio is read
as F with Satterthwaite degrees of freedom (`2 mean² / var` of the winsorised squares,
times the effective sample size of squares of Gaussian AR(1) errors, `phi^(2j)` at lag
j), two-sided, with an empirical null whose centre is free as well (`central_null`: a
shock common to the products moves every product's ratio together). Sales on a coarse
grid (integers with a half-width under MIN_SCALE_HALF_WIDTH units) or an interval at 0
are not scale-tested: there the 80 % quantile sits on an atom the interval's bounds
need not match. A product's coverage p-value is the Bonferroni of the two where both
ran (`coverage_family`). Measured by `bench/coverage_bench.py`
(docs/health.md).

Everything is a pure function of per-product rows (products × days matrices, NaN where
a day has no sale or no interval), so the health check's `product_phase` stays
partition-invariant; the p-values join the per-product combination and BH in
`global_phase` (`join_pvalues`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import fdtr, fdtrc, ndtr, ndtri

from forecastguard.health.stats import (
    CENTRAL_Z,
    MIN_NULL_PRODUCTS,
    central_null_sd,
    scatter_cells,
)
from forecastguard.health.window import WindowData

NOMINAL = 0.8  # the served interval is [P10, P90]
MAX_PHI = 0.95
# The coverage test's share of the per-product Bonferroni beside the drift tests' p-value
COVERAGE_WEIGHT = 0.5
_TINY_P = 1e-300
_CENTRAL_BINS = 20  # bins a side of 0 in `central_null`
SCALE_CAP = 3.0  # half-widths: the scale test winsorises |u| here
MIN_SCALE_HALF_WIDTH = 5.0  # units: integer sales below it are too coarse for the scale test
MIN_SCALE_REFERENCE = 14  # reference days the scale test needs for the errors' shape


@dataclass(frozen=True)
class CoverageTests:
    """Per product (arrays over products; NaN where untested)."""

    n: np.ndarray  # days with a sale and an interval
    coverage: np.ndarray  # share of those inside [lower, upper]
    phi: np.ndarray  # the errors' lag-1 autocorrelation used for n_eff
    n_eff: np.ndarray  # effective sample size of the hits
    pvalue: np.ndarray  # two-sided, coverage = nominal (the model's, before the empirical null)
    interval_score: np.ndarray  # mean interval score (Gneiting & Raftery), units
    inside: np.ndarray  # days with lower <= sale <= upper (= coverage * n)
    strictly_inside: np.ndarray  # days with lower < sale < upper
    vf: np.ndarray  # the hits' variance factor (n / n_eff)
    nominal: float = NOMINAL


_HERMITE_TERMS = 400
_PHI_GRID = np.linspace(0.0, MAX_PHI, 96)


def _hermite_weights(nominal: float) -> tuple[np.ndarray, np.ndarray]:
    """(k, a_k²) of the indicator of the central `nominal` interval of N(0, 1)."""
    c = float(ndtri(0.5 + nominal / 2))
    density = np.exp(-c * c / 2) / np.sqrt(2 * np.pi)

    def normalised_hermite(x: float) -> np.ndarray:  # He_k(x) / sqrt(k!)
        h = np.empty(_HERMITE_TERMS)
        h[0], h[1] = 1.0, x
        for k in range(1, _HERMITE_TERMS - 1):
            h[k + 1] = (x * h[k] - np.sqrt(k) * h[k - 1]) / np.sqrt(k + 1)
        return h

    k = np.arange(1, _HERMITE_TERMS)
    a = -density * (normalised_hermite(c)[:-1] - normalised_hermite(-c)[:-1]) / np.sqrt(k)
    return k, a * a


def hit_autocorrelation(r: np.ndarray, nominal: float = NOMINAL) -> np.ndarray:
    """Correlation of two hits of the central `nominal` interval whose Gaussian errors
    have correlation `r` (0 <= r < 1)."""
    k, a2 = _hermite_weights(nominal)
    r = np.asarray(r, dtype=float)
    # Half the weights are exactly 0 (the odd Hermite terms of an even function): their
    # powers are left at 0 rather than computed (0 * r^k is 0 either way: the same sum,
    # at half the cost, a twentieth of a cold check).
    used = a2 != 0
    powers = np.zeros((*r.shape, len(k)))
    powers[..., used] = r[..., None] ** k[used]
    return (a2 * powers).sum(axis=-1) / (nominal * (1.0 - nominal))


@lru_cache(maxsize=32)
def _variance_factors(n: int, nominal: float) -> np.ndarray:
    lags = np.arange(1, max(n, 2))
    rho = hit_autocorrelation(_PHI_GRID[:, None] ** lags[None, :], nominal)
    return 1.0 + 2.0 * ((1.0 - lags / n) * rho).sum(axis=1)


def variance_factor(phi: np.ndarray, n: int, nominal: float = NOMINAL) -> np.ndarray:
    """How much serial dependence (Gaussian AR(1) errors, lag-1 correlation `phi`)
    inflates the variance of the coverage of `n` consecutive days."""
    return np.interp(np.asarray(phi, dtype=float), _PHI_GRID, _variance_factors(int(n), nominal))


def lag1_autocorrelation(errors: np.ndarray) -> np.ndarray:
    """Per row of `errors` (products × consecutive days, NaN: no value): the lag-1
    autocorrelation of the demeaned values over pairs of consecutive days, bias-
    corrected and clipped to [0, MAX_PHI] (0 where fewer than 3 pairs)."""
    e = np.asarray(errors, dtype=float)
    n = np.sum(np.isfinite(e), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without any value
        mean = np.nanmean(np.where(np.isfinite(e), e, np.nan), axis=1, keepdims=True)
        d = e - mean
        pairs = np.isfinite(d[:, 1:]) & np.isfinite(d[:, :-1])
        num = np.nansum(np.where(pairs, d[:, 1:] * d[:, :-1], 0.0), axis=1)
        den = np.nansum(np.where(np.isfinite(d), d * d, 0.0), axis=1)
        phi = np.where(den > 0, num / den, 0.0)
        phi = phi + (1.0 + 3.0 * phi) / np.maximum(n, 1)
    phi = np.where(pairs.sum(axis=1) >= 3, phi, 0.0)
    return np.clip(phi, 0.0, MAX_PHI)


def interval_score(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, nominal: float = NOMINAL
) -> np.ndarray:
    """The interval score of each point: width plus 2/alpha times the miss (lower is
    better; alpha = 1 - nominal)."""
    alpha = 1.0 - nominal
    below = np.clip(lower - actual, 0.0, None)
    above = np.clip(actual - upper, 0.0, None)
    return (upper - lower) + (2.0 / alpha) * (below + above)


def _count_pmf(n: np.ndarray, vf: np.ndarray, nominal: float) -> np.ndarray:
    """(rows, max n + 1): the beta-binomial pmf of each row's count (0 beyond its n), by
    the ratio of consecutive terms (logs and a cumulative sum: no special functions)."""
    rho = np.clip((np.maximum(vf, 1.0) - 1.0) / np.maximum(n - 1.0, 1.0), 1e-9, 0.999)
    size = 1.0 / rho - 1.0
    a, b = (nominal * size)[:, None], ((1.0 - nominal) * size)[:, None]
    m = n[:, None]
    j = np.arange(int(n.max()), dtype=float)[None, :]  # pmf(j + 1) / pmf(j), j < n
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.log(m - j) - np.log(j + 1.0) + np.log(j + a) - np.log(m - j - 1.0 + b)
    step = np.where(j < m, step, -np.inf)
    log_pmf = np.concatenate([np.zeros((len(n), 1)), np.cumsum(step, axis=1)], axis=1)
    log_pmf -= np.nanmax(np.where(np.isfinite(log_pmf), log_pmf, np.nan), axis=1)[:, None]
    pmf = np.exp(log_pmf)
    return pmf / pmf.sum(axis=1, keepdims=True)


def _tails(pmf: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mid-p lower and upper tails of each row's pmf at its count k."""
    j = np.arange(pmf.shape[1])[None, :]
    at = k[:, None]
    half = 0.5 * (pmf * (j == at)).sum(axis=1)
    return (pmf * (j < at)).sum(axis=1) + half, (pmf * (j > at)).sum(axis=1) + half


def _valid_counts(*arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    values = [np.asarray(a, dtype=float) for a in arrays]
    values = list(np.broadcast_arrays(*values))
    ok = np.ones(values[0].shape, bool)
    for v in values:
        ok &= np.isfinite(v)
    n = values[-2]
    return ok & (n >= 1), values


def count_tails(
    k: np.ndarray, n: np.ndarray, vf: np.ndarray, nominal: float = NOMINAL
) -> tuple[np.ndarray, np.ndarray]:
    """Mid-p tails (P(X < k) + P(X = k)/2, P(X > k) + P(X = k)/2) of a count of `n`
    dependent hits of probability `nominal` whose variance is `vf` times the binomial's:
    X beta-binomial with intra-class correlation (vf - 1)/(n - 1) (binomial at vf 1).
    Arrays over products; NaN where n < 1 or an input is not finite."""
    ok, (k, n, vf) = _valid_counts(k, n, vf)
    lower, upper = np.full(k.shape, np.nan), np.full(k.shape, np.nan)
    if ok.any():
        nn = np.round(n[ok])
        pmf = _count_pmf(nn, vf[ok], nominal)
        lower[ok], upper[ok] = _tails(pmf, np.clip(np.round(k[ok]), 0, nn))
    return lower, upper


def hit_pvalues(
    inside: np.ndarray,
    strictly_inside: np.ndarray,
    n: np.ndarray,
    vf: np.ndarray,
    nominal: float = NOMINAL,
) -> tuple[np.ndarray, np.ndarray]:
    """(two-sided p-value, side: -1 too narrow / +1 too wide): twice the smaller of the
    too-narrow tail of `inside` (bounds count as inside) and the too-wide tail of
    `strictly_inside` (bounds count as outside), `count_tails`."""
    ok, (inside, strict, n, vf) = _valid_counts(inside, strictly_inside, n, vf)
    narrow, wide = np.full(n.shape, np.nan), np.full(n.shape, np.nan)
    if ok.any():
        nn = np.round(n[ok])
        pmf = _count_pmf(nn, vf[ok], nominal)  # one pmf for both sides
        narrow[ok] = _tails(pmf, np.clip(np.round(inside[ok]), 0, nn))[0]
        wide[ok] = _tails(pmf, np.clip(np.round(strict[ok]), 0, nn))[1]
    p = np.minimum(1.0, 2.0 * np.fmin(narrow, wide))
    side = np.where(np.isfinite(p), np.where(narrow <= wide, -1, 1), 0)
    return p, side


def calibrated_pvalues(
    inside: np.ndarray,
    strictly_inside: np.ndarray,
    n: np.ndarray,
    vf: np.ndarray,
    nominal: float = NOMINAL,
    floor: float = 1.0,
) -> tuple[np.ndarray, float]:
    """(p-values, null sd): the products' coverage p-values with the empirical null.

    The model p-values' signed z-values (negative: too narrow) are fitted by central
    matching (`stats.central_null_sd`, centre 0); their spread, at least `floor` (1 with
    fewer than MIN_NULL_PRODUCTS tested products or no fit), multiplies each product's
    variance factor and the tails are taken again. Needs every product of the check
    together (`check.global_phase`)."""
    p, side = hit_pvalues(inside, strictly_inside, n, vf, nominal)
    sd = _null_sd(p, side, floor)
    if sd > 1.0:
        p, _ = hit_pvalues(inside, strictly_inside, n, np.asarray(vf) * sd * sd, nominal)
    return p, float(sd)


def coverage_tests(
    actual: np.ndarray,
    predicted: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    errors: np.ndarray | None = None,
    nominal: float = NOMINAL,
    min_samples: int = 7,
    phi: np.ndarray | None = None,
) -> CoverageTests:
    """Each product's window coverage of [lower, upper] against `nominal` (products ×
    days matrices; NaN where a day has no sale or no interval). `errors` (products ×
    consecutive days, e.g. reference and window) give each product's autocorrelation;
    by default the window's `actual - predicted`; `phi`, when given, is that
    autocorrelation already computed (`lag1_autocorrelation(errors)`). Products with
    fewer than `min_samples` such days are not tested (NaN). A bound above the other is
    an error."""
    y = np.asarray(actual, dtype=float)
    lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if not (y.shape == lo.shape == hi.shape) or y.ndim != 2:
        raise ValueError(
            f"coverage_tests needs products x days matrices of one shape, got "
            f"{y.shape}, {lo.shape}, {hi.shape}"
        )
    ok = np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi)
    if (lo[ok] > hi[ok]).any():
        raise ValueError("coverage_tests: a lower bound above its upper bound")
    n = ok.sum(axis=1)
    inside = np.where(ok, (y >= lo) & (y <= hi), False).sum(axis=1)
    strict = np.where(ok, (y > lo) & (y < hi), False).sum(axis=1)
    score = np.where(ok, interval_score(np.where(ok, y, 0), np.where(ok, lo, 0), hi), 0.0)
    if phi is None:
        if errors is None:
            errors = np.where(ok, y - np.asarray(predicted, dtype=float), np.nan)
        phi = lag1_autocorrelation(errors)
    tested = n >= max(min_samples, 1)
    vf = variance_factor(phi, y.shape[1], nominal)
    p, _ = hit_pvalues(inside, strict, n, vf, nominal)
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.where(n > 0, inside / np.maximum(n, 1), np.nan)
        mean_score = np.where(n > 0, score.sum(axis=1) / np.maximum(n, 1), np.nan)
    nan = np.full(len(n), np.nan)
    return CoverageTests(
        n=n.astype(np.int64),
        coverage=coverage,
        phi=np.where(tested, phi, nan),
        n_eff=np.where(tested, n / vf, nan),
        pvalue=np.where(tested, p, nan),
        interval_score=mean_score,
        inside=inside.astype(np.int64),
        strictly_inside=strict.astype(np.int64),
        vf=np.where(tested, vf, nan),
        nominal=nominal,
    )


@dataclass(frozen=True)
class ScaleTests:
    """Per product (NaN where untested): the window's winsorised squared distance from
    the interval's midpoint, in half-widths, against the calibrated one."""

    ratio: np.ndarray  # window mean / reference (shape) mean: about 4 for a doubled spread
    dof_window: np.ndarray  # Satterthwaite degrees of freedom of the two means
    dof_reference: np.ndarray
    pvalue: np.ndarray  # two-sided F, before the empirical null


def squares_variance_factor(phi: np.ndarray, n: int) -> np.ndarray:
    """The variance factor of the mean of `n` consecutive squared Gaussian AR(1) errors
    (lag-j correlation of the squares phi^(2j))."""
    phi = np.asarray(phi, dtype=float)
    lags = np.arange(1, max(int(n), 2))
    weights = 1.0 - lags / max(int(n), 1)
    # Once per distinct phi (half the products sit at the clip 0): the same doubles.
    values, inverse = np.unique(phi, return_inverse=True)
    factor = 1.0 + 2.0 * (weights * np.power(values[:, None], 2 * lags)).sum(axis=-1)
    return factor[inverse.reshape(phi.shape)]


def row_quantile(x: np.ndarray, q: float) -> np.ndarray:
    """Each row's `q` quantile over its finite values (linear interpolation, as
    `np.nanquantile`, which is ten times slower on 10,000 rows); NaN for a row without
    any."""
    x = np.asarray(x, dtype=float)
    x = np.where(np.isfinite(x), x, np.nan)
    srt = np.sort(x, axis=1)  # NaN last
    count = np.isfinite(x).sum(axis=1)
    pos = np.maximum(count - 1, 0) * q
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, np.maximum(count - 1, 0))
    rows = np.arange(len(x))
    frac = pos - low
    with np.errstate(invalid="ignore"):
        value = srt[rows, low] * (1.0 - frac) + srt[rows, high] * frac
    return np.where(count > 0, value, np.nan)


def _winsorised_squares(dev: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """min((dev / scale)², SCALE_CAP²), a zero scale counting any non-zero deviation as
    at the cap; NaN stays NaN."""
    cap = SCALE_CAP * SCALE_CAP
    with np.errstate(invalid="ignore", divide="ignore"):
        u2 = np.where(scale > 0, (dev / np.where(scale > 0, scale, 1.0)) ** 2, np.inf)
    u2 = np.where(dev == 0, 0.0, u2)
    return np.where(np.isnan(dev) | np.isnan(scale), np.nan, np.minimum(u2, cap))


def scale_tests(
    actual: np.ndarray,
    predicted: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    reference_errors: np.ndarray,
    phi: np.ndarray,
    min_samples: int = 7,
) -> ScaleTests:
    """The scale test of each product's window against its served interval (products ×
    window days matrices as `coverage_tests`; `reference_errors`: products × reference
    days, actual - predicted, NaN where none; `phi`: the errors' lag-1 autocorrelation).

    Untested (NaN): fewer than `min_samples` window days or MIN_SCALE_REFERENCE reference
    days, a lower bound at or below 0 or an interval without width on a window day,
    integer sales with a median half-width under MIN_SCALE_HALF_WIDTH, or a reference
    without spread."""
    y = np.asarray(actual, dtype=float)
    lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    ref = np.asarray(reference_errors, dtype=float)
    if ref.ndim != 2 or ref.shape[0] != y.shape[0]:
        raise ValueError(
            f"scale_tests: reference_errors must be products x days, got {ref.shape} "
            f"for {y.shape[0]} products"
        )
    ok = np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi)
    mid = np.where(ok, (lo + hi) / 2.0, np.nan)
    half = np.where(ok, (hi - lo) / 2.0, np.nan)
    n_w = ok.sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without any value
        psi_w = _winsorised_squares(np.where(ok, y - mid, np.nan), half)
        # The reference errors about the same centre (the interval's midpoint is the
        # point plus an offset: the median over the window), standardised by their own
        # 80 % quantile of |e|: the shape, not the scale.
        offset = row_quantile(mid - np.asarray(predicted, dtype=float), 0.5)
        dev_r = ref - offset[:, None]
        q80 = row_quantile(np.abs(dev_r), NOMINAL)
        psi_r = _winsorised_squares(dev_r, q80[:, None])
        n_r = np.isfinite(psi_r).sum(axis=1)
        s_w, s_r = np.nanmean(psi_w, axis=1), np.nanmean(psi_r, axis=1)
        v_r = np.nanvar(psi_r, axis=1, ddof=1)
        coarse = np.all(np.where(ok, y == np.round(y), True), axis=1) & (
            row_quantile(half, 0.5) < MIN_SCALE_HALF_WIDTH
        )
        at_zero = np.any(ok & ((lo <= 0) | (half <= 0)), axis=1)
    tested = (n_w >= max(min_samples, 2)) & (n_r >= MIN_SCALE_REFERENCE)
    tested &= ~coarse & ~at_zero & (s_r > 0) & (v_r > 0) & (q80 > 0)
    phi = np.asarray(phi, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = 2.0 * s_r * s_r / v_r
        dof_w = shape * n_w / squares_variance_factor(phi, y.shape[1])
        dof_r = shape * n_r / squares_variance_factor(phi, ref.shape[1])
        ratio = s_w / s_r
    nan = np.full(len(y), np.nan)
    ratio, dof_w, dof_r = (np.where(tested, a, nan) for a in (ratio, dof_w, dof_r))
    return ScaleTests(
        ratio=ratio, dof_window=dof_w, dof_reference=dof_r, pvalue=f_pvalues(ratio, dof_w, dof_r)[0]
    )


def f_pvalues(
    ratio: np.ndarray, dof_window: np.ndarray, dof_reference: np.ndarray, sd: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(two-sided p-value, side: -1 wider spread than the interval / +1 narrower) of the
    scale test's ratio, F(dof_window, dof_reference), the variance times sd²."""
    r = np.asarray(ratio, dtype=float)
    d1 = np.asarray(dof_window, dtype=float) / (sd * sd)
    d2 = np.asarray(dof_reference, dtype=float) / (sd * sd)
    ok = np.isfinite(r) & np.isfinite(d1) & np.isfinite(d2) & (d1 > 0) & (d2 > 0)
    below = np.full(r.shape, np.nan)
    above = np.full(r.shape, np.nan)
    below[ok], above[ok] = fdtr(d1[ok], d2[ok], r[ok]), fdtrc(d1[ok], d2[ok], r[ok])
    p = np.minimum(1.0, 2.0 * np.fmin(below, above))
    side = np.where(ok, np.where(above <= below, -1, 1), 0)
    return p, side


def _null_sd(p: np.ndarray, side: np.ndarray, floor: float) -> float:
    """The empirical null's spread of signed z-values by central matching (1 with fewer
    than MIN_NULL_PRODUCTS p-values or no fit), at least `floor`."""
    tested = np.isfinite(p)
    if tested.sum() < MIN_NULL_PRODUCTS:
        return max(1.0, floor)
    z = side[tested] * -ndtri(np.clip(p[tested], _TINY_P, 1.0) / 2.0)
    fitted = central_null_sd(z)
    return max(fitted, floor) if np.isfinite(fitted) else max(1.0, floor)


def coverage_family(p_hits: np.ndarray, p_scale: np.ndarray) -> np.ndarray:
    """A product's coverage p-value: the Bonferroni of the hit test's and the scale
    test's (both see the window's spread; no assumption on how they depend), either
    alone where the other did not run (the scale test: intermittent or coarse sales,
    too short a reference)."""
    ph, ps = np.asarray(p_hits, dtype=float), np.asarray(p_scale, dtype=float)
    both = np.minimum(1.0, 2.0 * np.fmin(ph, ps))
    return np.where(np.isfinite(ph) & np.isfinite(ps), both, np.fmin(ph, ps))


def join_pvalues(
    p_drift: np.ndarray, p_coverage: np.ndarray, weight: float = COVERAGE_WEIGHT
) -> tuple[np.ndarray, np.ndarray]:
    """Per product, the drift tests' p-value and the coverage test's as one: a weighted
    Bonferroni, `min(p_drift / (1 - w), p_coverage / w)` where both exist, either alone
    otherwise; and whether the coverage test gave it. Products without an interval keep
    their drift p-value unchanged."""
    pd_, pc = np.asarray(p_drift, dtype=float), np.asarray(p_coverage, dtype=float)
    both = np.isfinite(pd_) & np.isfinite(pc)
    a, b = pd_ / (1.0 - weight), pc / weight
    joint = np.where(np.isfinite(pc), pc, pd_)
    joint = np.where(both, np.minimum(1.0, np.minimum(a, b)), joint)
    from_coverage = np.isfinite(pc) & ~(both & (a <= b))
    return joint, from_coverage


def aggregate_coverage(tests: CoverageTests) -> float | None:
    """The share of all tested days inside their interval (the metric's aggregate)."""
    n = np.nan_to_num(tests.n.astype(float))
    c = np.nan_to_num(tests.coverage)
    total = n.sum()
    return float((n * c).sum() / total) if total > 0 else None


def central_null(z: np.ndarray) -> tuple[float, float]:
    """(centre, spread) of the z-values' empirical null by central matching with a free
    centre (Efron): log f(z) = a + b z + c z² fitted to the histogram of z on
    [-CENTRAL_Z, CENTRAL_Z] (Poisson regression by Newton's method). (0, NaN) with fewer
    than 20 values there or no downward curvature."""
    z = np.asarray(z, dtype=float)
    z = z[np.isfinite(z)]
    edges = np.linspace(-CENTRAL_Z, CENTRAL_Z, 2 * _CENTRAL_BINS + 1)
    counts, _ = np.histogram(z, bins=edges)
    if counts.sum() < 20:
        return 0.0, float("nan")
    mid = (edges[:-1] + edges[1:]) / 2.0
    design = np.stack([np.ones_like(mid), mid, mid * mid], axis=1)
    beta = np.array([np.log(max(counts.mean(), 1.0)), 0.0, -0.5])
    for _ in range(50):
        mu = np.exp(np.clip(design @ beta, -700, 700))
        step = np.linalg.lstsq(
            design.T @ (design * mu[:, None]), design.T @ (counts - mu), rcond=None
        )[0]
        beta = beta + step
        if np.abs(step).max() < 1e-10:
            break
    if not np.all(np.isfinite(beta)) or beta[2] >= 0:
        return 0.0, float("nan")
    return float(-beta[1] / (2.0 * beta[2])), float(np.sqrt(-0.5 / beta[2]))


def calibrated_scale_pvalues(
    ratio: np.ndarray, dof_window: np.ndarray, dof_reference: np.ndarray, floor: float = 1.0
) -> tuple[np.ndarray, tuple[float, float]]:
    """(p-values, (centre, sd)): the scale tests' p-values with an empirical null whose
    centre is free (`central_null`): a shock common to the products (a cold week) moves
    every window's spread against the interval together, which a centre fixed at 0
    would only partly take as a wider null. The spread is at least `floor`; with fewer
    than MIN_NULL_PRODUCTS tests, no empirical null (0, 1)."""
    p, side = f_pvalues(ratio, dof_window, dof_reference)
    tested = np.isfinite(p)
    if tested.sum() < MIN_NULL_PRODUCTS:
        return p, (0.0, 1.0)
    z = side * -ndtri(np.clip(p, _TINY_P, 1.0) / 2.0)
    centre, sd = central_null(z[tested])
    if not np.isfinite(sd):
        centre, sd = 0.0, 1.0
    sd = max(sd, floor)
    with np.errstate(invalid="ignore"):
        p = np.where(tested, 2.0 * ndtr(-np.abs(z - centre) / sd), np.nan)
    return np.minimum(p, 1.0), (centre, sd)


def global_pvalues(rows: pd.DataFrame, floor: float = 1.0) -> tuple[np.ndarray, dict[str, float]]:
    """Every product's coverage p-value from its `product_columns` (all products of the
    check together: the empirical nulls need them) and the empirical nulls. Rows without
    the hit counts (an older product phase) keep their `coverage_pvalue`."""
    if "coverage_inside" not in rows:
        return rows["coverage_pvalue"].to_numpy(np.float64), {}
    col = {c: rows[c].to_numpy(np.float64) for c in _GLOBAL_COLUMNS}
    p_hits, sd_hits = calibrated_pvalues(
        col["coverage_inside"],
        col["coverage_strict"],
        col["coverage_n"],
        col["coverage_vf"],
        floor=floor,
    )
    p_scale, (centre, sd_scale) = calibrated_scale_pvalues(
        col["coverage_scale_ratio"],
        col["coverage_scale_dof_w"],
        col["coverage_scale_dof_r"],
        floor=floor,
    )
    p_hits = np.where(np.isfinite(col["coverage_vf"]), p_hits, np.nan)
    nulls = {"hits_sd": sd_hits, "scale_centre": centre, "scale_sd": sd_scale}
    return coverage_family(p_hits, p_scale), nulls


# Products a call of `product_columns`' row-wise tests (2,500 before: its peak at 10,000
# products x 120 days 4 MB lower, the same CPU)
_CHUNK_PRODUCTS = 1250
_ROW_FIELDS = [f for f in fields(CoverageTests) if f.name != "nominal"]  # per-product arrays


_GLOBAL_COLUMNS = (
    "coverage_inside",
    "coverage_strict",
    "coverage_n",
    "coverage_vf",
    "coverage_scale_ratio",
    "coverage_scale_dof_w",
    "coverage_scale_dof_r",
)


def product_columns(data: WindowData, min_samples: int) -> dict[str, np.ndarray]:
    """The health check's per-product coverage columns of a window (`check.product_phase`):
    `coverage`, `coverage_n`, `coverage_pvalue` (the model's, before the empirical nulls
    `global_pvalues` adds), `interval_score` (NaN for products whose forecasts in the
    window have no interval) and, for `global_pvalues`, `coverage_inside`,
    `coverage_strict` (the two hit counts), `coverage_vf` (their variance factor) and the
    scale test's `coverage_scale_ratio`, `coverage_scale_dof_w`, `coverage_scale_dof_r`.
    The autocorrelation comes from each product's errors over every day read (reference
    and window); the scale test's shape from the `ref_days` days before the window."""
    n_all, wd = len(data.products), data.window_days
    nan = np.full((n_all, wd), np.nan)
    if data.lower is None or data.upper is None:
        t = coverage_tests(nan, nan, nan, nan, min_samples=min_samples)
        sc = scale_tests(nan, nan, nan, nan, np.full((n_all, 1), np.nan), t.phi, min_samples)
    else:
        has = ~np.isnan(data.predicted)
        # The matrices filled a block of rows at a time (`scatter_cells`: no masked copies
        # of all the rows, which were this step's memory peak), the errors subtracted there.
        errors = np.full((n_all, data.history_days + wd), np.nan)
        scatter_cells(errors, data.codes, data.day, (data.units, data.predicted), has)
        rows = has & (data.day >= data.history_days) & ~np.isnan(data.lower)
        rows &= ~np.isnan(data.upper)
        del nan
        y, pred, lo, hi = (np.full((n_all, wd), np.nan) for _ in range(4))
        pairs = ((y, data.units), (pred, data.predicted), (lo, data.lower), (hi, data.upper))
        for matrix, values in pairs:
            scatter_cells(matrix, data.codes, data.day, values, rows, data.history_days)
        # Row by row computations a chunk of products at a time (the same doubles: every
        # reduction is along a product's own row): their working matrices were the
        # check's memory peak with intervals.
        chunks = [slice(i, i + _CHUNK_PRODUCTS) for i in range(0, max(n_all, 1), _CHUNK_PRODUCTS)]
        phi = np.concatenate([lag1_autocorrelation(errors[c]) for c in chunks])  # both tests
        tests = [
            coverage_tests(y[c], pred[c], lo[c], hi[c], min_samples=min_samples, phi=phi[c])
            for c in chunks
        ]
        t = CoverageTests(
            *(np.concatenate([getattr(part, f.name) for part in tests]) for f in _ROW_FIELDS),
            nominal=tests[0].nominal,
        )
        ref_days = min(data.ref_days, data.history_days)
        reference = errors[:, data.history_days - ref_days : data.history_days]
        parts = [
            scale_tests(y[c], pred[c], lo[c], hi[c], reference[c], phi[c], min_samples)
            for c in chunks
        ]
        sc = ScaleTests(
            *(np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(ScaleTests))
        )
    return {
        "coverage": t.coverage,
        "coverage_n": t.n,
        "coverage_pvalue": coverage_family(t.pvalue, sc.pvalue),
        "interval_score": t.interval_score,
        "coverage_inside": t.inside,
        "coverage_strict": t.strictly_inside,
        "coverage_vf": t.vf,
        "coverage_scale_ratio": sc.ratio,
        "coverage_scale_dof_w": sc.dof_window,
        "coverage_scale_dof_r": sc.dof_reference,
    }

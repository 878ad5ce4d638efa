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
change it), bias-corrected (Kendall: `+ (1 + 3 phi)/n`) and clipped to [0, 0.95]. The
test is two-sided, normal with a continuity correction: a too-wide interval (coverage
far above nominal: stock that ties up money) is reported as well as a too-narrow one.
Measured by `bench/coverage_bench.py` (docs/health.md).

Everything is a pure function of per-product rows (products × days matrices, NaN where
a day has no sale or no interval), so the health check's `product_phase` stays
partition-invariant; the p-values join the per-product combination and BH in
`global_phase` (`join_pvalues`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import ndtr, ndtri

from forecastguard.health.window import WindowData

NOMINAL = 0.8  # the served interval is [P10, P90]
MAX_PHI = 0.95
# The coverage test's share of the per-product Bonferroni beside the drift tests' p-value
COVERAGE_WEIGHT = 0.5
CONTINUITY = 0.25  # of a hit, subtracted from the coverage gap (discreteness)


@dataclass(frozen=True)
class CoverageTests:
    """Per product (arrays over products; NaN where untested)."""

    n: np.ndarray  # days with a sale and an interval
    coverage: np.ndarray  # share of those inside [lower, upper]
    phi: np.ndarray  # the errors' lag-1 autocorrelation used for n_eff
    n_eff: np.ndarray  # effective sample size of the hits
    pvalue: np.ndarray  # two-sided, coverage = nominal
    interval_score: np.ndarray  # mean interval score (Gneiting & Raftery), units
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
    return (a2 * r[..., None] ** k).sum(axis=-1) / (nominal * (1.0 - nominal))


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


def coverage_tests(
    actual: np.ndarray,
    predicted: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    errors: np.ndarray | None = None,
    nominal: float = NOMINAL,
    min_samples: int = 7,
) -> CoverageTests:
    """Each product's window coverage of [lower, upper] against `nominal` (products ×
    days matrices; NaN where a day has no sale or no interval). `errors` (products ×
    consecutive days, e.g. reference and window) give each product's autocorrelation;
    by default the window's `actual - predicted`. Products with fewer than
    `min_samples` such days are not tested (NaN)."""
    y = np.asarray(actual, dtype=float)
    lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    ok = np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi)
    n = ok.sum(axis=1)
    hits = np.where(ok, (y >= lo) & (y <= hi), False)
    score = np.where(ok, interval_score(np.where(ok, y, 0), np.where(ok, lo, 0), hi), 0.0)
    if errors is None:
        errors = np.where(ok, y - np.asarray(predicted, dtype=float), np.nan)
    phi = lag1_autocorrelation(errors)
    tested = n >= max(min_samples, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.where(n > 0, hits.sum(axis=1) / n, np.nan)
        vf = variance_factor(phi, y.shape[1], nominal)
        n_eff = n / vf
        se = np.sqrt(nominal * (1.0 - nominal) / n_eff)
        gap = np.clip(np.abs(coverage - nominal) - CONTINUITY / n, 0.0, None)
        p = 2.0 * ndtr(-gap / se)
        mean_score = np.where(n > 0, score.sum(axis=1) / n, np.nan)
    nan = np.full(len(n), np.nan)
    return CoverageTests(
        n=n.astype(np.int64),
        coverage=np.where(n > 0, coverage, nan),
        phi=np.where(tested, phi, nan),
        n_eff=np.where(tested, n_eff, nan),
        pvalue=np.where(tested, np.minimum(p, 1.0), nan),
        interval_score=mean_score,
        nominal=nominal,
    )


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


def product_columns(data: WindowData, min_samples: int) -> dict[str, np.ndarray]:
    """The health check's per-product coverage columns of a window (`check.product_phase`):
    `coverage`, `coverage_n`, `coverage_pvalue`, `interval_score` (NaN for products whose
    forecasts in the window have no interval). The autocorrelation comes from each
    product's errors over every day read (reference and window)."""
    n_all, wd = len(data.products), data.window_days
    nan = np.full((n_all, wd), np.nan)
    if data.lower is None or data.upper is None:
        t = coverage_tests(nan, nan, nan, nan, min_samples=min_samples)
    else:
        has = ~np.isnan(data.predicted)
        errors = np.full((n_all, data.history_days + wd), np.nan)
        errors[data.codes[has], data.day[has]] = (data.units - data.predicted)[has]
        rows = has & (data.day >= data.history_days) & ~np.isnan(data.lower)
        rows &= ~np.isnan(data.upper)
        at = (data.codes[rows], data.day[rows] - data.history_days)
        y, pred, lo, hi = nan.copy(), nan.copy(), nan.copy(), nan.copy()
        y[at], pred[at] = data.units[rows], data.predicted[rows]
        lo[at], hi[at] = data.lower[rows], data.upper[rows]
        t = coverage_tests(y, pred, lo, hi, errors=errors, min_samples=min_samples)
    return {
        "coverage": t.coverage,
        "coverage_n": t.n,
        "coverage_pvalue": t.pvalue,
        "interval_score": t.interval_score,
    }

"""The served interval's coverage test (issue 27): valid under serial dependence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastguard.health.coverage import (
    NOMINAL,
    calibrated_pvalues,
    calibrated_scale_pvalues,
    central_null,
    count_tails,
    coverage_family,
    coverage_tests,
    global_pvalues,
    hit_autocorrelation,
    hit_pvalues,
    interval_score,
    join_pvalues,
    lag1_autocorrelation,
    row_quantile,
    scale_tests,
    variance_factor,
)

Z90 = 1.2815515655446004


def _ar1(rng: np.random.Generator, n: int, days: int, phi: float) -> np.ndarray:
    x = np.empty((n, days))
    x[:, 0] = rng.standard_normal(n)
    for t in range(1, days):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * rng.standard_normal(n)
    return x


def test_hit_autocorrelation_matches_the_bivariate_normal() -> None:
    rng = np.random.default_rng(0)
    r = 0.5
    x = rng.standard_normal(400_000)
    y = r * x + np.sqrt(1 - r**2) * rng.standard_normal(400_000)
    hx, hy = np.abs(x) < Z90, np.abs(y) < Z90
    assert hit_autocorrelation(r) == pytest.approx(np.corrcoef(hx, hy)[0, 1], abs=0.01)
    assert hit_autocorrelation(0.5) < 0.25  # below the r² bound of an even function
    assert hit_autocorrelation(0.0) == pytest.approx(0.0)
    vf = variance_factor(np.array([0.0, 0.5, 0.7]), 30)
    assert vf[0] == pytest.approx(1.0) and 1.0 < vf[1] < vf[2]


def test_lag1_autocorrelation_is_estimated_per_product() -> None:
    rng = np.random.default_rng(1)
    e = _ar1(rng, 2000, 60, 0.5)
    phi = lag1_autocorrelation(e)
    assert np.mean(phi) == pytest.approx(0.5, abs=0.03)
    e[:5, ::2] = np.nan  # too few consecutive pairs: no estimate
    assert (lag1_autocorrelation(e)[:5] == 0).all()


def _calibrated(rng, n, phi, spread=1.0, width=1.0):
    e = _ar1(rng, n, 60, phi) * np.where(np.arange(60) >= 30, spread, 1.0)
    y = 100 + e[:, 30:]
    lo = np.full_like(y, 100 - Z90 * width)
    hi = np.full_like(y, 100 + Z90 * width)
    return coverage_tests(y, np.full_like(y, 100.0), lo, hi, errors=e)


def test_a_calibrated_interval_under_serial_dependence_rarely_alarms() -> None:
    t = _calibrated(np.random.default_rng(2), 4000, 0.5)
    assert np.mean(t.coverage) == pytest.approx(NOMINAL, abs=0.01)
    assert np.mean(t.pvalue < 0.05) <= 0.06  # the test's size, with autocorrelated hits
    assert np.mean(t.pvalue < 0.01) <= 0.015
    naive_se = np.sqrt(NOMINAL * (1 - NOMINAL) / 30)  # what ignoring the dependence gives
    z = np.abs(t.coverage - NOMINAL) / naive_se
    assert np.mean(z > 1.96) > 0.08  # ... would alarm too often


def test_a_doubled_spread_and_a_too_wide_interval_are_both_found() -> None:
    rng = np.random.default_rng(3)
    doubled = _calibrated(rng, 500, 0.5, spread=2.0)
    assert np.mean(doubled.coverage) == pytest.approx(0.47, abs=0.03)
    assert np.median(doubled.pvalue) < 0.01
    wide = _calibrated(rng, 500, 0.0, width=2.5)  # covers ~99 %: stock tied up
    assert np.mean(wide.coverage) > 0.95 and np.median(wide.pvalue) < 0.05
    score_doubled, score_ok = (
        np.mean(doubled.interval_score),
        np.mean(_calibrated(rng, 500, 0.5).interval_score),
    )
    assert score_doubled > 1.5 * score_ok


def test_products_without_enough_interval_days_are_not_tested() -> None:
    y = np.full((2, 30), 5.0)
    lo, hi = np.full_like(y, 4.0), np.full_like(y, 6.0)
    lo[1, 5:] = np.nan  # five days with an interval
    t = coverage_tests(y, y, lo, hi, min_samples=7)
    assert t.n.tolist() == [30, 5]
    assert np.isfinite(t.pvalue[0]) and np.isnan(t.pvalue[1])
    assert t.coverage.tolist() == [1.0, 1.0]


def test_interval_score_and_joined_pvalues() -> None:
    assert interval_score(np.array([5.0]), np.array([4.0]), np.array([6.0]))[0] == 2.0
    assert interval_score(np.array([7.0]), np.array([4.0]), np.array([6.0]))[0] == pytest.approx(12)
    with pytest.raises(ValueError, match="lower bound above"):
        coverage_tests(np.ones((1, 3)), np.ones((1, 3)), np.full((1, 3), 2.0), np.ones((1, 3)))
    with pytest.raises(ValueError, match="one shape"):
        coverage_tests(np.ones((1, 3)), np.ones((1, 3)), np.ones((1, 2)), np.ones((1, 3)))
    p_drift = np.array([0.001, 0.5, np.nan, 0.02])
    p_cov = np.array([0.2, 0.004, 0.03, np.nan])
    joint, by_cov = join_pvalues(p_drift, p_cov)
    np.testing.assert_allclose(joint, [0.002, 0.008, 0.03, 0.02])
    assert by_cov.tolist() == [False, True, True, False]


def test_count_tails_are_the_binomial_at_vf_1_and_heavier_with_dependence() -> None:
    from scipy import stats

    k, n = np.array([14, 24, 30]), np.array([30, 30, 30])
    lower, upper = count_tails(k, n, np.ones(3))
    pmf = stats.binom.pmf(k, n, NOMINAL)
    np.testing.assert_allclose(lower, stats.binom.cdf(k, n, NOMINAL) - pmf / 2, rtol=1e-5)
    np.testing.assert_allclose(lower + upper, 1.0)
    dependent, _ = count_tails(k, n, np.full(3, 1.4))
    assert dependent[0] > 5 * lower[0]  # a skewed count: the low tail much heavier
    assert np.isnan(count_tails(np.array([3.0]), np.array([0]), np.array([1.0]))[0]).all()


def test_the_count_tail_matches_simulated_gaussian_ar1_hits() -> None:
    rng = np.random.default_rng(7)
    x = _ar1(rng, 100_000, 30, 0.5)
    hits = (np.abs(x) <= Z90).sum(axis=1)
    vf = variance_factor(np.array([0.5]), 30)
    for k in (16, 18):
        simulated = np.mean(hits < k) + np.mean(hits == k) / 2
        lower, _ = count_tails(np.array([k]), np.array([30]), vf)
        assert lower[0] == pytest.approx(simulated, rel=0.2)


def test_bounds_count_inside_for_too_narrow_and_outside_for_too_wide() -> None:
    # An intermittent product: P10 = 0 and most days sell nothing. Inside by the closed
    # interval (not too narrow) and strictly inside on few days (not too wide either).
    y = np.zeros((1, 30))
    y[0, ::5] = 2.0
    lo, hi = np.zeros_like(y), np.full_like(y, 3.0)
    t = coverage_tests(y, y, lo, hi)
    assert t.inside[0] == 30 and t.strictly_inside[0] == 6
    assert t.pvalue[0] > 0.05
    # An interval without width at the sale itself: no evidence either way.
    flat = coverage_tests(y, y, y.copy(), y.copy())
    assert flat.pvalue[0] == pytest.approx(1.0)
    p, side = hit_pvalues(np.array([10]), np.array([10]), np.array([30]), np.array([1.3]))
    assert p[0] < 1e-3 and side[0] == -1


def test_the_empirical_null_only_widens() -> None:
    rng = np.random.default_rng(4)
    t = _calibrated(rng, 3000, 0.5)
    p, sd = calibrated_pvalues(t.inside, t.strictly_inside, t.n, t.vf)
    assert 1.0 <= sd < 1.15
    assert (p >= t.pvalue - 1e-12).all()
    few = calibrated_pvalues(t.inside[:50], t.strictly_inside[:50], t.n[:50], t.vf[:50])
    assert few[1] == 1.0


def _scale_window(rng, n, phi, spread=1.0, width=1.0, shocks="normal"):
    e = _ar1(rng, n, 120, phi) if shocks == "normal" else _t3_ar1(rng, n, 120, phi)
    q = np.quantile(e, 0.9)  # the marginal's 90 % quantile (symmetric errors)
    e[:, 90:] *= spread
    y = 100 + e[:, 90:]
    lo, hi = np.full_like(y, 100 - q * width), np.full_like(y, 100 + q * width)
    return scale_tests(y, np.full_like(y, 100.0), lo, hi, e[:, :90], lag1_autocorrelation(e))


def _t3_ar1(rng, n, days, phi):
    x = np.zeros((n, days + 50))
    shocks = rng.standard_t(3, (n, days + 50))
    for t in range(1, days + 50):
        x[:, t] = phi * x[:, t - 1] + shocks[:, t]
    return x[:, 50:]


def test_the_scale_test_is_calibrated_and_finds_a_doubled_spread_and_a_wide_interval() -> None:
    rng = np.random.default_rng(8)
    null = _scale_window(rng, 3000, 0.5)
    assert np.mean(null.pvalue < 0.05) <= 0.07
    assert np.mean(null.pvalue < 0.01) <= 0.02
    heavy = _scale_window(rng, 3000, 0.5, shocks="t3")  # shape from the reference
    assert np.mean(heavy.pvalue < 0.01) <= 0.03
    doubled = _scale_window(rng, 300, 0.5, spread=2.0)
    assert np.median(doubled.ratio) > 2.5 and np.median(doubled.pvalue) < 1e-3
    hits = _calibrated(np.random.default_rng(8), 300, 0.5, spread=2.0)
    assert np.median(doubled.pvalue) < np.median(hits.pvalue)  # the misses' size counts
    wide = _scale_window(rng, 300, 0.0, width=2.5)
    assert np.median(wide.ratio) < 0.5 and np.median(wide.pvalue) < 0.05


def test_the_scale_test_refuses_what_it_cannot_judge() -> None:
    rng = np.random.default_rng(9)
    n = 6
    e = _ar1(rng, n, 120, 0.3) * 10
    y = 100 + e[:, 90:]
    lo, hi = np.full_like(y, 87.0), np.full_like(y, 113.0)
    y[0] = np.nan  # no sales in the window
    lo[1, :] = 0.0  # an interval at zero (intermittent)
    y[2] = np.round(y[2] / 10)  # integer sales on a coarse grid
    lo[2], hi[2] = 8.0, 12.0
    hi[3] = lo[3]  # an interval without width
    ref = e[:, :90].copy()
    ref[4] = 0.0  # a reference without spread
    t = scale_tests(y, np.full_like(y, 100.0), lo, hi, ref, np.full(n, 0.3))
    assert np.isnan(t.pvalue[:5]).all() and np.isfinite(t.pvalue[5])
    with pytest.raises(ValueError, match="products x days"):
        scale_tests(y, y, lo, hi, ref[:3], np.zeros(n))


def test_the_coverage_pvalue_is_the_bonferroni_of_the_two_tests() -> None:
    family = coverage_family(np.array([0.01, 0.2, np.nan]), np.array([np.nan, 0.03, np.nan]))
    np.testing.assert_allclose(family[:2], [0.01, 0.06])
    assert np.isnan(family[2])
    rows = pd.DataFrame({"coverage_pvalue": [0.2, np.nan]})
    p, sds = global_pvalues(rows)  # an older product phase: its p-values as they are
    assert p[0] == 0.2 and np.isnan(p[1]) and sds == {}


def test_the_scale_tests_empirical_null_follows_a_shift_common_to_the_products() -> None:
    rng = np.random.default_rng(10)
    centre, sd = central_null(np.concatenate([rng.normal(0.7, 1.2, 5000), [np.nan]]))
    assert centre == pytest.approx(0.7, abs=0.1) and sd == pytest.approx(1.2, abs=0.1)
    assert np.isnan(central_null(np.array([0.1, 0.2]))[1])
    ratio = np.exp(rng.normal(0.0, 0.3, 40))
    p, null = calibrated_scale_pvalues(ratio, np.full(40, 20.0), np.full(40, 60.0))
    assert null == (0.0, 1.0) and np.isfinite(p).all()  # too few products: the model's


def test_row_quantile_is_numpys_nanquantile() -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(40, 25))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[3] = np.nan
    x[4, 1:] = np.nan  # one value
    for q in (0.1, 0.5, 0.8):
        with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
            expected = np.nanquantile(x, q, axis=1)
        np.testing.assert_allclose(row_quantile(x, q), expected, equal_nan=True)

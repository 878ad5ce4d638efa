"""The served interval's coverage test (issue 27): valid under serial dependence."""

from __future__ import annotations

import numpy as np
import pytest

from forecastguard.health.coverage import (
    NOMINAL,
    coverage_tests,
    hit_autocorrelation,
    interval_score,
    join_pvalues,
    lag1_autocorrelation,
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
    p_drift = np.array([0.001, 0.5, np.nan, 0.02])
    p_cov = np.array([0.2, 0.004, 0.03, np.nan])
    joint, by_cov = join_pvalues(p_drift, p_cov)
    np.testing.assert_allclose(joint, [0.002, 0.008, 0.03, 0.02])
    assert by_cov.tolist() == [False, True, True, False]

"""The statistics against straightforward references: numpy, scipy, a hand-computed BH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from forecastguard.health import stats

SHARED = Path(__file__).resolve().parents[3] / "shared"


def _groups(rng: np.random.Generator, sizes: list[int], shift: float = 0.0, ties: bool = False):
    codes = np.repeat(np.arange(len(sizes)), sizes)
    values = rng.normal(shift, 2.0, codes.size)
    if ties:
        values = np.round(values)
    return codes, values


def test_error_metrics_match_numpy() -> None:
    rng = np.random.default_rng(0)
    codes, errors = _groups(rng, [5, 1, 0, 12])
    m = stats.error_metrics(codes, errors, 4)
    for g in (0, 1, 3):
        e = errors[codes == g]
        assert m.n[g] == e.size
        assert m.rmse[g] == pytest.approx(np.sqrt(np.mean(e**2)))
        assert m.mae[g] == pytest.approx(np.mean(np.abs(e)))
        assert m.bias[g] == pytest.approx(-np.mean(e))  # predicted - actual
    assert m.n[2] == 0 and np.isnan(m.rmse[2])


@pytest.mark.parametrize("ties", [False, True])
def test_ks_and_wasserstein_match_scipy(ties: bool) -> None:
    rng = np.random.default_rng(1)
    sizes_a = [30, 30, 7, 12, 0, 3, 45, 30]
    sizes_b = [30, 21, 9, 40, 5, 30, 6, 30]
    ca, va = _groups(rng, sizes_a, ties=ties)
    cb, vb = _groups(rng, sizes_b, shift=0.7, ties=ties)
    result = stats.two_sample(ca, va, cb, vb, len(sizes_a))
    pvalues = stats.ks_pvalues(result, min_samples=5)
    for g in range(len(sizes_a)):
        a, b = va[ca == g], vb[cb == g]
        if not a.size or not b.size:
            assert np.isnan(result.statistic[g]) and np.isnan(pvalues[g])
            continue
        reference = sps.ks_2samp(a, b)
        assert result.statistic[g] == pytest.approx(reference.statistic, abs=1e-12)
        assert result.wasserstein[g] == pytest.approx(sps.wasserstein_distance(a, b))
        assert result.pooled_std[g] == pytest.approx(np.std(np.concatenate([a, b])))
        if min(a.size, b.size) >= 5:
            assert pvalues[g] == reference.pvalue  # exactly scipy's
        else:
            assert np.isnan(pvalues[g])


def test_ks_pvalue_cache_gives_each_group_its_own_answer() -> None:
    # Two groups with the same sizes but different statistics must not share a p-value.
    a = np.arange(10.0)
    ca = np.repeat([0, 1], 10)
    va = np.concatenate([a, a])
    cb = np.repeat([0, 1], 10)
    vb = np.concatenate([a + 0.5, a + 8.5])
    result = stats.two_sample(ca, va, cb, vb, 2)
    p = stats.ks_pvalues(result, 7)
    assert p[0] == sps.ks_2samp(a, a + 0.5).pvalue
    assert p[1] == sps.ks_2samp(a, a + 8.5).pvalue
    assert p[1] < 0.01 < p[0]


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful")
def test_ks_exact_pvalue_is_scipys_double_for_equal_sizes() -> None:
    # Every D of one to eight steps (where scipy's exact value can round above 1 and it
    # takes its asymptotic one: n = 7, 15, 30, 60, ...) and some larger ones.
    checked = 0
    for n in range(1, 99):
        a = np.arange(n, dtype=float)
        for h in sorted({*range(min(n, 8) + 1), n // 2, n}):
            b = a + h - 0.5 if h else a.copy()
            mine = stats.ks_exact_pvalue(n, n, h * n)
            assert mine is not None, (n, h)
            assert mine == sps.ks_2samp(a, b).pvalue, (n, h)
            checked += 1
    assert checked > 900


def test_ks_exact_pvalue_is_scipys_double_for_unequal_sizes() -> None:
    sizes = [1, 2, 5, 7, 13, 14, 23, 28, 29, 30, 31, 45, 89]
    for n_a in sizes:
        for n_b in sizes:
            if n_a == n_b:
                continue
            a = np.arange(n_a) / n_a
            for shift in np.linspace(-1.05, 1.05, 9):
                b = np.arange(n_b) / n_b + shift
                result = stats.two_sample(np.zeros(n_a, np.int64), a, np.zeros(n_b, np.int64), b, 1)
                mine = stats.ks_exact_pvalue(n_a, n_b, int(result.d_num[0]))
                assert mine == sps.ks_2samp(a, b).pvalue, (n_a, n_b, shift)


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful")
def test_ks_exact_pvalue_leaves_what_it_does_not_cover_to_scipy() -> None:
    assert stats.ks_exact_pvalue(10_001, 30, 5) is None  # scipy: asymptotic
    assert stats.ks_exact_pvalue(99, 99, 2 * 99) is None  # exact rounds above 1, t > 1
    # ... and ks_pvalues then asks scipy on the group's own data.
    a = np.arange(99.0)
    result = stats.two_sample(np.zeros(99, np.int64), a, np.zeros(99, np.int64), a + 1.5, 1)
    assert stats.ks_pvalues(result, 7)[0] == sps.ks_2samp(a, a + 1.5).pvalue


def test_ks_pvalues_do_not_import_scipy_stats() -> None:
    # The sales KS of a check (30 + 30 days, ties, D of one step) without scipy.stats,
    # whose first import cost 0.85 s of a cold check (issue 23).
    code = (
        "import sys, numpy as np; from forecastguard.health import stats; "
        "rng = np.random.default_rng(0); n = 400; "
        "codes = np.repeat(np.arange(n), 30); "
        "a = np.round(rng.poisson(3.0, codes.size)).astype(float); "
        "b = a.copy(); b[::30] += 1.0; "
        "p = stats.ks_pvalues(stats.two_sample(codes, a, codes, b, n), 7); "
        "assert np.isfinite(p).all() and (p == 1.0).any(); "
        "print('scipy.stats' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(SHARED)},
    )
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_two_sample_refuses_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        stats.two_sample(np.array([0]), np.array([np.nan]), np.array([0]), np.array([1.0]), 1)


def test_benjamini_hochberg_by_hand() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan, 0.5])
    # m = 5 tested. Sorted: 0.005, 0.01, 0.03, 0.04, 0.5 -> m*p/i:
    # 0.025, 0.025, 0.05, 0.05, 0.5 -> running minimum from the top: same.
    q = stats.benjamini_hochberg(p)
    expected = np.array([0.025, 0.05, 0.05, 0.025, np.nan, 0.5])
    np.testing.assert_allclose(q, expected, equal_nan=True)
    assert stats.simes(p) == pytest.approx(0.025)


def test_benjamini_hochberg_is_monotone_and_capped() -> None:
    p = np.array([0.9, 0.02, 0.021, 0.8])
    q = stats.benjamini_hochberg(p)
    # sorted 0.02, 0.021, 0.8, 0.9 -> 0.08, 0.042, 1.0667, 0.9 -> min from top: 0.042, 0.042, 0.9, 0.9
    np.testing.assert_allclose(q, [0.9, 0.042, 0.042, 0.9])
    assert stats.simes(np.array([np.nan])) is None


def test_seasonal_naive_scale_by_hand() -> None:
    history = np.full((2, 16), np.nan)
    history[0, :] = np.arange(16.0)  # every y[t] - y[t-7] = 7
    history[1, 0] = 1.0
    history[1, 7] = 4.0  # one pair: 3
    scale = stats.seasonal_naive_scale(history)
    assert scale[0] == pytest.approx(7.0)
    assert scale[1] == pytest.approx(3.0)
    short = stats.seasonal_naive_scale(np.ones((3, 5)))
    assert np.isnan(short).all()
    np.testing.assert_allclose(
        stats.rmsse(np.array([14.0, 1.0]), np.array([7.0, 0.0])), [2.0, np.nan]
    )

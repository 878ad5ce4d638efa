"""With 10,000 products and no real drift, drift is flagged in about FDR_ALPHA of windows.

Each window compares every product's 30 forecast errors with its 30 errors of the
previous window, both drawn from the same distribution (a healthy model). The BH/Simes
rule may flag a window at most about alpha of the time; the naive rule "any product
with p < 0.05" flags nearly every window — the test shows both.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecastguard.health import stats

N_PRODUCTS = 10_000
N_WINDOWS = 60
DAYS = 30
ALPHA = 0.05


def _window_errors(rng: np.random.Generator, level: np.ndarray) -> np.ndarray:
    # Poisson demand around each product's level, forecast by that level with a small error.
    mean = np.repeat(level, DAYS)
    return rng.poisson(mean) - mean * np.exp(rng.normal(0.0, 0.1, mean.size))


@pytest.mark.slow
def test_fdr_rule_rarely_flags_a_window_without_drift() -> None:
    rng = np.random.default_rng(20260530)
    level = np.exp(rng.normal(np.log(6.0), 1.0, N_PRODUCTS))
    codes = np.repeat(np.arange(N_PRODUCTS), DAYS)
    flagged = naive_flagged = 0
    for _ in range(N_WINDOWS):
        window, previous = _window_errors(rng, level), _window_errors(rng, level)
        sample = stats.two_sample(codes, window, codes, previous, N_PRODUCTS)
        p = stats.ks_pvalues(sample, min_samples=7)
        q = stats.benjamini_hochberg(p)
        flagged += bool((q <= ALPHA).any())
        naive_flagged += bool((p < ALPHA).any())
    # Binomial(60, <= 0.05): allow three standard deviations above alpha.
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / N_WINDOWS)
    assert flagged / N_WINDOWS <= bound, f"{flagged} of {N_WINDOWS} windows flagged"
    assert naive_flagged / N_WINDOWS >= 0.95, "the naive rule should flag almost every window"


def test_fdr_rule_detects_drift_in_a_few_products() -> None:
    rng = np.random.default_rng(7)
    level = np.exp(rng.normal(np.log(6.0), 1.0, N_PRODUCTS))
    codes = np.repeat(np.arange(N_PRODUCTS), DAYS)
    window, previous = _window_errors(rng, level), _window_errors(rng, level)
    drifted = np.arange(20)  # 0.2 % of the products: their demand doubles
    mask = np.isin(codes, drifted)
    window[mask] += np.repeat(level[drifted], DAYS)
    sample = stats.two_sample(codes, window, codes, previous, N_PRODUCTS)
    q = stats.benjamini_hochberg(stats.ks_pvalues(sample, min_samples=7))
    found = np.flatnonzero(q <= ALPHA)
    assert len(found) >= 15
    false_discoveries = set(found.tolist()) - set(drifted.tolist())
    assert len(false_discoveries) <= max(1, len(found) // 5)

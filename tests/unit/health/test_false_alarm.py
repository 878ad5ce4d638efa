"""With 10,000 products and no real drift, drift is flagged in about FDR_ALPHA of windows.

Each window compares every product's 30 forecast errors with its 30 errors of the
previous window, both from the same process (a healthy model): Poisson demand around an
AR(1) log-intensity (coefficient 0.5), so the errors are serially dependent, as real
ones are. The BH/Simes rule on the drift test may flag a window at most about alpha of
the time; the naive rule "any product with p < 0.05" flags nearly every window.
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


def _errors(rng: np.random.Generator, level: np.ndarray, phi: float = 0.5) -> np.ndarray:
    """(products x 2 DAYS) errors: Poisson demand around an AR(1) log-intensity around
    each product's level, forecast by that level with a small error."""
    shocks = rng.normal(0.0, 0.3, (len(level), 2 * DAYS))
    latent = np.empty_like(shocks)
    latent[:, 0] = shocks[:, 0] / np.sqrt(1 - phi * phi)
    for j in range(1, 2 * DAYS):
        latent[:, j] = phi * latent[:, j - 1] + shocks[:, j]
    mean = level[:, None] * np.exp(latent)
    return rng.poisson(mean) - level[:, None] * np.exp(rng.normal(0.0, 0.1, mean.shape))


def _pvalues(errors: np.ndarray) -> np.ndarray:
    tests = stats.drift_tests(
        errors[:, :DAYS], errors[:, DAYS:], contiguous=np.ones(len(errors), bool)
    )
    return stats.drift_decision(tests, ALPHA, 0.5).pvalue


@pytest.mark.slow
def test_fdr_rule_rarely_flags_a_window_without_drift() -> None:
    rng = np.random.default_rng(20260530)
    level = np.exp(rng.normal(np.log(6.0), 1.0, N_PRODUCTS))
    flagged = naive_flagged = 0
    for _ in range(N_WINDOWS):
        p = _pvalues(_errors(rng, level))
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
    errors = _errors(rng, level)
    drifted = np.arange(20)  # 0.2 % of the products: their demand triples
    errors[drifted, DAYS:] += 2 * level[drifted, None]
    q = stats.benjamini_hochberg(_pvalues(errors))
    found = np.flatnonzero(q <= ALPHA)
    assert len(found) >= 15
    false_discoveries = set(found.tolist()) - set(drifted.tolist())
    assert len(false_discoveries) <= max(1, len(found) // 5)

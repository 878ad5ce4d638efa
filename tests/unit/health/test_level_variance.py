"""The level test's separate-variance form (stats.LEVEL_VARIANCE "separate", issue 23):
with a 90-day reference and a window whose spread is larger, the pooled variance is
too small and rejects too often; each period's own variance holds the level."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import stdtr

from forecastguard.health import stats


def _tests(variance: str, monkeypatch: pytest.MonkeyPatch) -> stats.DriftTests:
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((4000, 90))
    win = 3.0 * rng.standard_normal((4000, 30))  # no level change; three times the spread
    monkeypatch.setattr(stats, "LEVEL_VARIANCE", variance)
    return stats.drift_tests(ref, win, contiguous=np.ones(4000, bool))


def _rejections(t: stats.DriftTests) -> float:
    """Share of products with p < 0.05 at phi 0 (the errors are independent)."""
    p = 2.0 * stdtr(t.level_dof[:, 0], -np.abs(t.level_diff) / t.level_se[:, 0])
    return float(np.mean(p < 0.05))


def test_the_separate_variance_holds_where_the_pooled_one_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pooled = _tests("pooled", monkeypatch)
    separate = _tests("separate", monkeypatch)
    ratio = np.median(separate.level_se[:, 0] / pooled.level_se[:, 0])
    assert ratio == pytest.approx(1.53, abs=0.1)  # sqrt((1/90 + 9/30) / (2.97 (1/90 + 1/30)))
    assert _rejections(pooled) > 0.15
    assert 0.035 < _rejections(separate) < 0.065
    np.testing.assert_array_equal(separate.level_diff, pooled.level_diff)

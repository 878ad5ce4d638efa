"""The project's one RMSSE (forecastguard.scoring) and its users agree on hand figures."""

from __future__ import annotations

import numpy as np
import pytest

from forecastguard import scoring
from forecastguard.health.stats import seasonal_naive_scale


def test_naive_scale_skips_missing_pairs() -> None:
    h = np.array([[1.0, 3.0, np.nan, 4.0, 8.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    s = scoring.naive_scale(h, lag=1)
    assert s[0] == pytest.approx(np.sqrt((4 + 16) / 2))  # (1,3) and (4,8); NaN pairs skipped
    assert s[1] == 0.0
    assert np.isnan(scoring.rmsse(np.array([1.0]), s[1:]))[0]


def test_naive_scale_lag7_is_the_health_checks_seasonal_scale() -> None:
    rng = np.random.default_rng(3)
    h = rng.poisson(4.0, size=(5, 40)).astype(float)
    h[1, 10:15] = np.nan
    np.testing.assert_allclose(scoring.naive_scale(h, lag=7), seasonal_naive_scale(h, 7))


def test_per_group_rmsse_and_aggregates() -> None:
    errors = np.array([1.0, -1.0, 3.0, np.nan, 2.0])
    groups = np.array([0, 0, 1, 1, 2])
    r = scoring.per_group_rmsse(errors, groups, np.array([1.0, 3.0, 0.0, 5.0]), 4)
    assert r[0] == pytest.approx(1.0)
    assert r[1] == pytest.approx(1.0)  # the NaN error is skipped
    assert np.isnan(r[2])  # scale 0
    assert np.isnan(r[3])  # no error
    assert scoring.worst_decile(np.arange(1, 21, dtype=float)) == pytest.approx(19.5)
    assert scoring.disparity_ratio(np.array([1.0, 1.0, 1.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2-D"):
        scoring.naive_scale(np.zeros(3))


def test_trainer_and_experiments_use_the_same_scale() -> None:
    from experiments.metrics import scales
    from trainer.judge.evaluate import per_product_rmsse, rmsse_scale

    units = np.array([[0.0, 2.0, 5.0, 1.0, 1.0, 4.0, 0.0, 3.0, 2.0]])
    trainer_scale = np.sqrt(rmsse_scale(units))
    exp_scale, _ = scales(units.T)
    # the experiments start at the first sale: the same series from day 1
    assert exp_scale[0] == pytest.approx(scoring.naive_scale(units[:, 1:])[0])
    assert trainer_scale[0] == pytest.approx(scoring.naive_scale(units)[0])
    actual = np.array([[1.0, 2.0]])
    pred = np.array([[2.0, 4.0]])
    r = per_product_rmsse(actual, pred, np.array([0]), rmsse_scale(units), n_products=1)
    assert r[0] == pytest.approx(np.sqrt(2.5) / trainer_scale[0])

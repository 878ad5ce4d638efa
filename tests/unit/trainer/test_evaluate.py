"""Metrics and baselines on hand-checked numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.judge.evaluate import (
    baseline_forecasts,
    disparity,
    per_product_rmsse,
    point_metrics,
    rmsse_scale,
    worst_decile_mean,
)


def test_rmsse_scale_is_mean_squared_daily_change() -> None:
    units = np.array([[1.0, 3.0, 2.0, np.nan], [5.0, 5.0, 5.0, 5.0]])
    scale = rmsse_scale(units)
    assert scale[0] == pytest.approx((4 + 1) / 2)
    assert scale[1] == 1.0  # a constant series falls back to 1


def test_point_metrics_overall_and_per_product() -> None:
    frame = pd.DataFrame(
        {
            "product_id": ["a", "a", "b", "b"],
            "actual": [2.0, 4.0, 10.0, 10.0],
            "predicted": [1.0, 4.0, 12.0, 14.0],
        }
    )
    overall, per = point_metrics(frame, "predicted", pd.Series({"a": 1.0, "b": 4.0}))
    assert overall["rmse"] == pytest.approx(np.sqrt((1 + 0 + 4 + 16) / 4))
    assert overall["mae"] == pytest.approx((1 + 0 + 2 + 4) / 4)
    assert overall["bias"] == pytest.approx((-1 + 0 + 2 + 4) / 4)  # predicted - actual
    assert per.loc["b", "bias"] == pytest.approx(3.0)
    assert per.loc["a", "rmsse"] == pytest.approx(np.sqrt(0.5 / 1.0))
    assert per.loc["b", "rmsse"] == pytest.approx(np.sqrt(10 / 4.0))
    assert overall["rmsse"] == pytest.approx((per.loc["a", "rmsse"] + per.loc["b", "rmsse"]) / 2)


def test_per_product_rmsse_matches_point_metrics() -> None:
    actual = np.array([[2.0, 4.0], [10.0, 10.0], [3.0, 3.0]])
    pred = np.array([[1.0, 4.0], [12.0, 14.0], [3.0, 2.0]])
    r = per_product_rmsse(
        actual, pred, np.array([0, 1, 0]), np.array([1.0, 4.0, 1.0]), n_products=3
    )
    assert r[0] == pytest.approx(np.sqrt((1 + 0 + 0 + 1) / 4))
    assert r[1] == pytest.approx(np.sqrt(10 / 4))
    assert np.isnan(r[2])


def test_baselines() -> None:
    units = np.arange(60, dtype=float)[None, :]
    base = baseline_forecasts(units, np.array([0]), np.array([40]), horizon=10, ma_days=4)
    np.testing.assert_array_equal(
        base["seasonal_naive"][0], [33, 34, 35, 36, 37, 38, 39, 33, 34, 35]
    )
    np.testing.assert_array_equal(base["moving_average"][0], np.full(10, 37.5))


def test_moving_average_ignores_days_before_the_product_existed() -> None:
    units = np.array([[np.nan, np.nan, 4.0, 6.0, 1.0]])
    base = baseline_forecasts(units, np.array([0]), np.array([4]), horizon=2, ma_days=7)
    np.testing.assert_array_equal(base["moving_average"][0], [5.0, 5.0])


def test_disparity_and_worst_decile() -> None:
    r = np.array([1.0] * 9 + [5.0, np.nan])
    d = disparity(r, [f"p{i}" for i in range(11)])
    assert d["worst_product"] == "p9" and d["worst_rmsse"] == 5.0
    assert d["median_rmsse"] == 1.0
    assert d["p90_over_median"] == pytest.approx(np.percentile(r[:10], 90))
    assert worst_decile_mean(r) == 5.0
    assert worst_decile_mean(np.arange(1, 21, dtype=float)) == pytest.approx(19.5)


def test_auto_ets_follows_a_weekly_pattern() -> None:
    from trainer.judge.evaluate import auto_ets_forecast

    rng = np.random.default_rng(0)
    week = np.array([2.0, 2.0, 3.0, 4.0, 8.0, 12.0, 1.0])
    history = np.tile(week, 20) + rng.normal(0, 0.2, 140)
    fc = auto_ets_forecast(history, 14)
    np.testing.assert_allclose(fc, np.tile(week, 2), atol=1.0)
    assert auto_ets_forecast(np.array([1.0, 3.0]), 3).tolist() == [2.0, 2.0, 2.0]

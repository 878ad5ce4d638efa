"""Windowing: the arrays match the panel, and only qualifying windows are made."""

from __future__ import annotations

import numpy as np

from trainer.data.features import FeatureArrays
from trainer.data.windowing import make_windows, origins_every


def toy_arrays(n_series: int = 2, n_days: int = 40, n_feat: int = 3) -> FeatureArrays:
    seq = np.arange(n_series * n_days * n_feat, dtype=np.float32).reshape(n_series, n_days, n_feat)
    known = -seq[:, :, :2]
    target = seq[:, :, 0] / 10
    listed = np.ones((n_series, n_days), dtype=bool)
    return FeatureArrays(
        seq=seq,
        known=known,
        target=target,
        product_index=np.arange(1, n_series + 1, dtype=np.int32),
        listed=listed,
    )


def test_window_contents_match_manual_slices() -> None:
    arrays = toy_arrays()
    w = make_windows(arrays, np.array([10, 20]), lookback=5, horizon=4)
    assert len(w) == 4
    assert w.x.shape == (4, 5, 3) and w.known.shape == (4, 4, 3) and w.y.shape == (4, 4)
    for i in range(len(w)):
        s, o = w.series[i], w.origin[i]
        np.testing.assert_array_equal(w.x[i], arrays.seq[s, o - 5 : o])
        np.testing.assert_array_equal(w.known[i, :, :2], arrays.known[s, o : o + 4])
        level = arrays.target[s, o - 28 : o].mean() if o >= 28 else arrays.target[s, :o].mean()
        np.testing.assert_allclose(w.level[i], level, rtol=1e-6)
        np.testing.assert_allclose(w.y[i] + w.level[i], arrays.target[s, o : o + 4], rtol=1e-6)
        assert w.product[i] == s + 1
    np.testing.assert_allclose(w.known[0, :, 2], [0.25, 0.5, 0.75, 1.0])


def test_windows_need_listed_targets_and_a_listed_last_input_day() -> None:
    arrays = toy_arrays()
    arrays.listed[0, 22] = False  # a target day of origin 20
    arrays.listed[1, 9] = False  # the day before origin 10
    w = make_windows(arrays, np.array([10, 20]), lookback=5, horizon=4)
    assert sorted(zip(w.series.tolist(), w.origin.tolist(), strict=True)) == [(0, 10), (1, 20)]
    free = make_windows(arrays, np.array([20]), lookback=5, horizon=4, require_targets=False)
    assert len(free) == 2


def test_origins_out_of_range_are_dropped() -> None:
    w = make_windows(toy_arrays(), np.array([2, 38, 30]), lookback=5, horizon=4)
    assert set(w.origin.tolist()) == {30}


def test_origins_every_ends_at_the_stop() -> None:
    o = origins_every(5, 40, 3, 4)
    assert o[-1] == 36 and o[0] >= 5 and np.all(np.diff(o) == 3)
    assert origins_every(30, 32, 1, 4).size == 0


def test_lookback_can_be_shortened_for_the_model() -> None:
    w = make_windows(toy_arrays(), np.array([20]), lookback=8, horizon=4)
    np.testing.assert_array_equal(w.inputs(3)["sequence"], w.x[:, -3:])


def test_level_averages_only_listed_days() -> None:
    arrays = toy_arrays(1, 60)
    arrays.listed[0, :25] = False  # the product starts on day 25
    w = make_windows(arrays, np.array([40]), lookback=5, horizon=4)
    np.testing.assert_allclose(w.level[0], arrays.target[0, 25:40].mean(), rtol=1e-6)

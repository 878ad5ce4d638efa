"""Windowing: the arrays match the panel, and only qualifying windows are made."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_budget_gives_every_series_an_equal_share_spread_over_its_origins() -> None:
    from trainer.data.windowing import budget_mask

    # Series 0: 100 windows, series 1: 100, series 2: only 10 (it keeps them all).
    series = np.repeat([0, 1, 2], [100, 100, 10])
    origin = np.concatenate([np.arange(100) * 2, np.arange(100) * 2, np.arange(90, 100) * 2])
    keep = budget_mask(series, origin, 70)
    assert keep.sum() <= 70
    per = np.bincount(series[keep])
    assert per.tolist() == [30, 30, 10]  # quota 30: the small series' unused share moves on
    for s in (0, 1):
        kept = np.sort(origin[keep & (series == s)])
        assert kept[0] == 0 and kept[-1] == 198  # first and latest origins in
        gaps = np.diff(kept)
        assert gaps.max() - gaps.min() <= 2  # evenly spread
    assert budget_mask(series, origin, 0).all() and budget_mask(series, origin, 500).all()
    assert budget_mask(series, origin, 3).tolist().count(True) == 3  # one each: the latest
    assert origin[budget_mask(series, origin, 3)].tolist() == [198, 198, 198]


def test_budgeted_windows_are_the_same_windows_fewer() -> None:
    arrays = toy_arrays(n_series=3, n_days=80)
    origins = origins_every(5, 80, 1, 4)
    every = make_windows(arrays, origins, lookback=5, horizon=4)
    some = make_windows(arrays, origins, lookback=5, horizon=4, max_windows=30)
    assert len(some) == 30 and len(every) > 30
    pairs = {(s, o): i for i, (s, o) in enumerate(zip(every.series, every.origin, strict=True))}
    for i in range(len(some)):
        j = pairs[(some.series[i], some.origin[i])]
        np.testing.assert_array_equal(some.x[i], every.x[j])
        np.testing.assert_array_equal(some.y[i], every.y[j])
    assert np.bincount(some.series).tolist() == [10, 10, 10]


def test_max_train_windows_is_checked_and_the_default_leaves_pasta_alone() -> None:
    from trainer.config import ConfigError, TrainConfig

    assert TrainConfig().max_train_windows >= 97_822  # the pasta data's training windows
    with pytest.raises(ConfigError, match="max_train_windows"):
        TrainConfig(max_train_windows=-1)

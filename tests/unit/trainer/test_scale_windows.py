"""Issue 26: windows chosen before they are gathered give the same windows and rows."""

from __future__ import annotations

import numpy as np

from tests.unit.trainer.helpers import make_sales
from trainer.config import TrainConfig
from trainer.data.prepare import prepare
from trainer.data.windowing import gather_windows, make_windows, window_pairs

CFG = TrainConfig(lookback=14, val_days=28, test_days=56, train_stride=3, min_observations=10)


def _same(a, b) -> None:
    for name in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_pairs_then_gather_is_make_windows() -> None:
    p = prepare(make_sales(3, 240), CFG)
    origins = np.arange(20, 230, 2)
    whole = make_windows(p.arrays, origins, 14, CFG.horizon, synthetic=p.panel.synthetic)
    s, o = window_pairs(p.arrays, origins, 14, CFG.horizon)
    _same(gather_windows(p.arrays, s, o, 14, CFG.horizon, p.panel.synthetic), whole)
    keep = np.arange(len(s)) % 3 == 0  # a choice made before the gather
    _same(gather_windows(p.arrays, s[keep], o[keep], 14, CFG.horizon), whole.subset(keep))


def test_refit_gathers_only_the_members_windows_with_the_same_rows() -> None:
    from trainer.models.gbm import member_mask, refit_windows

    p = prepare(make_sales(3, 400), CFG)
    every = p.refit_windows(through="test")
    end = len(p.panel.calendar)
    max_rows = len(every) * CFG.horizon // 4  # all history thinned to every fourth origin
    days = [60, 0]
    old = [member_mask(every, end, d, CFG.horizon, max_rows) for d in days]
    union = np.logical_or.reduce([m for m, _ in old])
    assert not union.all()  # the thinning leaves windows out: they are not gathered
    chosen, picks = refit_windows(p, days, max_rows)
    _same(chosen, every.subset(union))
    for (mask, stride), (old_mask, old_stride) in zip(picks, old, strict=True):
        assert stride == old_stride
        _same(chosen.subset(mask), every.subset(old_mask))

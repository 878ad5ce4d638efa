"""prepare(): the time-ordered split, never shuffled across time, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.trainer.helpers import make_sales
from trainer.config import TrainConfig
from trainer.data.load import DataError
from trainer.data.prepare import prepare

CFG = TrainConfig(lookback=14, val_days=28, test_days=56, train_stride=3, min_observations=10)


def test_split_is_time_ordered_and_windows_stay_in_their_split() -> None:
    p = prepare(make_sales(3, 240), CFG)
    H = CFG.horizon
    n_days = len(p.panel.calendar)
    assert p.val_end - p.train_end == 28 and n_days - p.val_end == 56
    assert (p.train.origin + H <= p.train_end).all()
    assert p.train.origin.max() + H == p.train_end  # the last training window ends at the split
    assert np.diff(np.unique(p.train.origin)).min() == 3
    assert set(p.val.origin.tolist()) == {p.train_end}
    assert set(p.test.origin.tolist()) == {p.val_end, p.val_end + H}
    assert len(p.val) == 3 and len(p.test) == 6
    dates = p.split_dates()
    assert dates["train_end"] < dates["val_start"] <= dates["val_end"] < dates["test_start"]
    refit = p.refit_windows()
    assert (refit.origin + H <= p.val_end).all() and refit.origin.max() + H == p.val_end
    assert len(refit) > len(p.train)
    assert p.train.x.shape[1:] == (14, len(p.feature_names))
    assert p.train.known.shape[2] == len(p.known_names)
    assert p.scale.shape == (3,) and (p.scale > 0).all()


def test_too_short_history_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="too few"):
        prepare(make_sales(2, 100), CFG)


def test_products_first_sold_after_training_are_left_out_not_fatal() -> None:
    sales = make_sales(3, 240)
    late = (sales["product_id"] == "P02") & (
        sales["date"] < sales["date"].max() - np.timedelta64(40, "D")
    )
    p = prepare(sales[~late], CFG)
    assert p.new_products == ("P02",)
    assert p.products == ("P00", "P01")
    assert "P02" not in {p.panel.product_ids[s] for s in p.test.series}

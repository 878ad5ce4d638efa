"""Features: values, holidays, no leakage from validation/test rows, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.unit.trainer.helpers import make_sales
from trainer.config import TrainConfig
from trainer.data.features import SEQ_FEATURES, FeaturePipeline, build_panel, holiday_flags
from trainer.data.quality import check_quality

CFG = TrainConfig(min_observations=10)


def fitted(sales: pd.DataFrame, train_end: int) -> tuple[FeaturePipeline, object]:
    clean = check_quality(sales, CFG).clean
    panel = build_panel(clean)
    return FeaturePipeline.fit(panel, train_end, "IT"), panel


def test_no_leakage_validation_and_test_rows_do_not_move_the_fit() -> None:
    sales = make_sales(3, 200)
    train_end = 140
    pipe_a, _ = fitted(sales, train_end)
    tampered = sales.copy()
    later = tampered["date"] >= tampered["date"].min() + pd.Timedelta(days=train_end)
    tampered.loc[later, "units_sold"] = tampered.loc[later, "units_sold"] * 50 + 1000
    tampered.loc[later, "on_promotion"] = 1
    pipe_b, _ = fitted(tampered, train_end)
    np.testing.assert_array_equal(pipe_a.group_mean, pipe_b.group_mean)
    np.testing.assert_array_equal(pipe_a.group_std, pipe_b.group_std)
    np.testing.assert_allclose(pipe_a.scaler.mean_, pipe_b.scaler.mean_)
    np.testing.assert_allclose(pipe_a.scaler.scale_, pipe_b.scaler.scale_)
    # ...while the same change inside the training days does move them.
    early = sales.copy()
    early.loc[~later, "units_sold"] += 5
    pipe_c, _ = fitted(early, train_end)
    assert not np.allclose(pipe_a.group_mean, pipe_c.group_mean)


def test_group_statistics_are_training_mean_and_std() -> None:
    sales = make_sales(2, 120)
    pipe, panel = fitted(sales, 80)
    np.testing.assert_allclose(pipe.group_mean, panel.units[:, :80].mean(axis=1))
    np.testing.assert_allclose(pipe.group_std, panel.units[:, :80].std(axis=1))


def test_lags_and_rolling_means_line_up_with_the_units() -> None:
    pipe, panel = fitted(make_sales(2, 120), 80)
    arrays = pipe.transform(panel)
    # Undo the StandardScaler to read the per-product standardised values.
    raw = arrays.seq * pipe.scaler.scale_ + pipe.scaler.mean_
    col = {n: i for i, n in enumerate(SEQ_FEATURES)}
    z = (panel.units[1] - pipe.group_mean[1]) / pipe.group_std[1]
    np.testing.assert_allclose(raw[1, 50, col["units"]], z[50], atol=1e-4)
    for k in (1, 7, 14, 28):
        np.testing.assert_allclose(raw[1, 50, col[f"lag_{k}"]], z[50 - k], atol=1e-4)
    rm7 = panel.units[1, 44:51].mean()
    np.testing.assert_allclose(
        raw[1, 50, col["roll_mean_7"]], (rm7 - pipe.group_mean[1]) / pipe.group_std[1], atol=1e-4
    )
    np.testing.assert_allclose(raw[1, 50, col["promo"]], panel.promo[1, 50], atol=1e-5)
    # Targets are the standardised units.
    np.testing.assert_allclose(arrays.target[1], z, atol=1e-5)


def test_cyclical_calendar_and_holidays() -> None:
    cal = pd.date_range("2024-12-23", "2024-12-27", freq="D")
    today, tomorrow = holiday_flags(cal, "IT")
    assert today.tolist() == [0, 0, 1, 1, 0]  # Christmas, St Stephen
    assert tomorrow.tolist() == [0, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="holiday_country 'XX'"):
        holiday_flags(cal, "XX")


def test_unknown_products_get_index_zero_and_median_statistics() -> None:
    pipe, _ = fitted(make_sales(3, 120), 80)
    idx = pipe.product_index(["P01", "NEW"])
    assert idx.tolist() == [2, 0]
    mean, _ = pipe.series_stats(["NEW"])
    assert mean[0] == pytest.approx(np.median(pipe.group_mean))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    pipe, panel = fitted(make_sales(2, 120), 80)
    pipe.save(tmp_path)
    loaded = FeaturePipeline.load(tmp_path)
    np.testing.assert_array_equal(loaded.transform(panel).seq, pipe.transform(panel).seq)
    assert (tmp_path / "feature_pipeline.json").read_text().count('"mean"') == 2


def test_promotions_mark_future_days() -> None:
    sales = make_sales(1, 60)
    end = sales["date"].max() + pd.Timedelta(days=5)
    promos = pd.DataFrame({"product_id": ["P00"], "date": [end]})
    panel = build_panel(sales, end=end, promotions=promos)
    assert panel.promo[0, -1] == 1.0
    assert np.isnan(panel.units[0, -5:]).all()


def test_last_year_uses_only_days_a_year_before() -> None:
    from trainer.data.features import last_year

    z = np.zeros((1, 800))
    z[0, 400] = 7.0
    listed = np.ones_like(z, dtype=bool)
    ly = last_year(z, listed)
    # Day 400 reaches days 761..767 only (a 7-day mean centred 364 days later).
    assert np.flatnonzero(ly[0]).tolist() == list(range(761, 768))
    np.testing.assert_allclose(ly[0, 764], 1.0)

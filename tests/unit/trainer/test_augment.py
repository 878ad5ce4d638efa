"""Augmentation: synthetic series for sparse products, training days only, marked."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.unit.trainer.helpers import make_sales
from trainer.augment import augment
from trainer.config import TrainConfig
from trainer.pipeline import prepare


def sales_with_sparse_product() -> pd.DataFrame:
    sales = make_sales(3, 240)
    # P02 launched late: only its last 150 days exist.
    late = sales["date"] >= sales["date"].min() + pd.Timedelta(days=90)
    return sales[(sales["product_id"] != "P02") | late].reset_index(drop=True)


def test_synthetic_series_use_training_days_only_and_are_marked() -> None:
    sales = make_sales(2, 100)
    cfg = TrainConfig(augment_copies=2, augment_noise=0.1)
    train_end = sales["date"].min() + pd.Timedelta(days=60)
    syn = augment(sales, ["P01"], train_end, cfg)
    assert set(syn["product_id"]) == {"P01"}
    assert syn["series_id"].nunique() == 2
    assert syn["synthetic"].all()
    assert syn["date"].max() < train_end
    assert (syn["units_sold"] >= 0).all()
    real = sales[(sales["product_id"] == "P01") & (sales["date"] < train_end)][
        "units_sold"
    ].to_numpy()
    one = syn[syn["series_id"] == syn["series_id"].iloc[0]]["units_sold"].to_numpy()
    assert len(one) == len(real) and not np.array_equal(one, real)
    # Interpolation between neighbours plus small noise keeps the series close to the real one.
    assert np.corrcoef(one, real)[0, 1] > 0.3


def test_augmentation_is_seeded() -> None:
    sales = make_sales(1, 80)
    end = sales["date"].max()
    cfg = TrainConfig(seed=3)
    pd.testing.assert_frame_equal(
        augment(sales, ["P00"], end, cfg), augment(sales, ["P00"], end, cfg)
    )


def test_nothing_to_augment_gives_an_empty_frame() -> None:
    assert augment(make_sales(1, 50), [], pd.Timestamp("2030-01-01"), TrainConfig()).empty


def test_synthetic_windows_are_training_only() -> None:
    cfg = TrainConfig(
        min_observations=200, augment_copies=2, lookback=14, val_days=28, test_days=28
    )
    prepared = prepare(sales_with_sparse_product(), cfg)
    assert prepared.quality.sparse_products == ["P02"]
    assert prepared.train.synthetic.any()
    syn_products = {
        prepared.panel.product_ids[s] for s in prepared.train.series[prepared.train.synthetic]
    }
    assert syn_products == {"P02"}
    assert not prepared.val.synthetic.any() and not prepared.test.synthetic.any()
    assert prepared.panel.synthetic[prepared.val.series].sum() == 0
    assert prepared.panel.synthetic[prepared.test.series].sum() == 0
    # Synthetic series never reach into validation days.
    syn_rows = np.flatnonzero(prepared.panel.synthetic)
    assert np.isnan(prepared.panel.units[syn_rows, prepared.train_end :]).all()
    # ...and the scalers ignore them (fitted on real training rows only).
    assert len(prepared.pipeline.products) == 3

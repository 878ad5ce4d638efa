"""Augmentation: synthetic series for sparse products, training days only, marked, bounded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.unit.trainer.helpers import make_sales
from trainer.config import TrainConfig
from trainer.data.augment import augment, plan_copies, training_windows_per_product
from trainer.data.prepare import prepare


def sales_with_sparse_product() -> pd.DataFrame:
    sales = make_sales(3, 240)
    # P02 launched late: only its last 150 days exist.
    late = sales["date"] >= sales["date"].min() + pd.Timedelta(days=90)
    return sales[(sales["product_id"] != "P02") | late].reset_index(drop=True)


def test_synthetic_series_use_training_days_only_and_are_marked() -> None:
    sales = make_sales(2, 100)
    cfg = TrainConfig(augment_copies=2, augment_noise=0.1, max_synthetic_share=0.6)
    train_end = sales["date"].min() + pd.Timedelta(days=60)
    syn = augment(sales, ["P01"], train_end, cfg).frame
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
    sales = pd.concat(
        [sales, make_sales(4, 80, seed=1).assign(product_id=lambda f: "Q" + f["product_id"])]
    )
    first, second = augment(sales, ["P00"], end, cfg), augment(sales, ["P00"], end, cfg)
    assert not first.frame.empty
    pd.testing.assert_frame_equal(first.frame, second.frame)


def test_nothing_to_augment_gives_an_empty_frame() -> None:
    aug = augment(make_sales(1, 50), [], pd.Timestamp("2030-01-01"), TrainConfig())
    assert aug.frame.empty
    assert aug.summary["synthetic_windows"] == 0 and not aug.summary["capped"]


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


def test_window_count_matches_the_windowing_of_prepare() -> None:
    cfg = TrainConfig(
        min_observations=200, augment_copies=2, lookback=14, val_days=28, test_days=28
    )
    prepared = prepare(sales_with_sparse_product(), cfg)
    clean = prepared.panel
    calendar = clean.calendar
    real = ~prepared.train.synthetic
    counted = pd.Series(
        [prepared.panel.product_ids[s] for s in prepared.train.series[real]]
    ).value_counts()
    long = pd.DataFrame(
        {
            "product_id": np.repeat(np.array(clean.product_ids)[~clean.synthetic], len(calendar)),
            "date": np.tile(calendar, int((~clean.synthetic).sum())),
            "units_sold": clean.units[~clean.synthetic].reshape(-1),
        }
    ).dropna()
    mine = training_windows_per_product(long, calendar[prepared.train_end], cfg)
    assert mine.sort_index().to_dict() == counted.sort_index().to_dict()


def test_synthetic_share_is_capped_and_reported() -> None:
    # 10 products, 8 of them sparse: 3 copies each would make synthetic windows 70 % of
    # training; the cap keeps them at most 20 % and says it had to cut.
    windows = pd.Series({f"P{i}": 10 for i in range(10)})
    sparse = [f"P{i}" for i in range(8)]
    plan, summary = plan_copies(windows, sparse, copies=3, max_share=0.2)
    assert summary["wanted_windows"] == 240 and summary["wanted_share"] > 0.7
    assert summary["synthetic_windows"] == 20 and summary["share"] <= 0.2
    assert sum(plan.values()) == 2 and summary["capped"]
    # Within the cap nothing is cut.
    plan, summary = plan_copies(windows, ["P0"], copies=2, max_share=0.2)
    assert plan == {"P0": 2} and not summary["capped"] and summary["share"] == round(20 / 120, 4)


def test_prepare_keeps_synthetic_windows_within_the_share() -> None:
    cfg = TrainConfig(
        min_observations=200,
        augment_copies=3,
        lookback=14,
        val_days=28,
        test_days=28,
        max_synthetic_share=0.2,
    )
    prepared = prepare(sales_with_sparse_product(), cfg)
    share = prepared.train.synthetic.mean()
    aug = prepared.quality.augmentation
    assert 0 < share <= 0.2
    assert aug["share"] == round(share, 4)
    assert aug["synthetic_windows"] == int(prepared.train.synthetic.sum())
    assert prepared.quality.to_dict()["augmentation"]["max_share"] == 0.2


def test_the_quantile_tails_train_on_real_windows_only(monkeypatch) -> None:
    """The point ensemble trains on the synthetic windows; the interval's quantile
    boosters (issue 27) do not: an interpolated series has a narrower spread than sales,
    both when training and when refitting."""
    import trainer.models.gbm as gbm
    from tests.support.trainer_config import small_config

    cfg = small_config(min_observations=200, augment_copies=2, gbm_history_days=(0,))
    prepared = prepare(sales_with_sparse_product(), cfg)
    w = prepared.train
    assert w.synthetic.any()
    seen: list[tuple[int, int]] = []
    real_train_tails = gbm.train_tails

    def spy(full, rows, *a, **kw):  # the tails' rows and the Dataset they index
        seen.append((len(rows), full.num_data()))
        return real_train_tails(full, rows, *a, **kw)

    monkeypatch.setattr(gbm, "train_tails", spy)
    held = gbm.train_gbm(prepared, num_threads=1, rounds=5, tail_levels=(0.1, 0.9))
    ((mask, _),) = [gbm.member_mask(w, prepared.train_end, 0, cfg.horizon, 600_000)]
    real = mask & ~w.synthetic
    assert seen[0] == (real.sum() * cfg.horizon, mask.sum() * cfg.horizon)
    assert sorted(held.tails) == [0.1, 0.9]
    gbm.refit_gbm(prepared, held, num_threads=1)
    every_day, [(mask, _)] = gbm.refit_windows(prepared, [0], 600_000)
    assert every_day.synthetic[mask].any()
    assert seen[1] == (
        (mask & ~every_day.synthetic).sum() * cfg.horizon,
        mask.sum() * cfg.horizon,
    )
    # a mask without synthetic windows is kept; one with nothing real left too
    from types import SimpleNamespace

    flags = SimpleNamespace(synthetic=np.array([False, True, False, True]))
    mask = np.array([True, True, False, True])
    np.testing.assert_array_equal(gbm.real_windows(flags, mask), [True, False, False, False])
    np.testing.assert_array_equal(
        gbm.real_windows(flags, mask & flags.synthetic), mask & flags.synthetic
    )


def test_the_tails_member_counts_all_history_by_the_days_it_spans(monkeypatch) -> None:
    """`tail_member` measures the all-history member (length 0) by the days its windows
    span, not as unbounded: on a short history it is nearer `TAIL_HISTORY_DAYS` than a
    shorter member and the tails train on it."""
    import trainer.models.gbm as gbm
    from tests.support.trainer_config import small_config

    assert gbm.tail_member([546, 0], all_days=700) == 1
    assert gbm.tail_member([546, 728, 0], all_days=1200) == 1
    assert gbm.tail_member([546, 0], all_days=2000) == 0
    cfg = small_config(gbm_history_days=(60, 0))
    prepared = prepare(sales_with_sparse_product(), cfg)
    span = prepared.train_end - int(prepared.train.origin.min())
    assert gbm.history_lengths(prepared.train, prepared.train_end, (60, 0)) == [60, 0]
    monkeypatch.setattr(gbm, "TAIL_HISTORY_DAYS", span + 10)  # all history is the nearer
    seen: list[int] = []
    real_train_tails = gbm.train_tails

    def spy(full, rows, history_days, *a, **kw):
        seen.append(history_days)
        return real_train_tails(full, rows, history_days, *a, **kw)

    monkeypatch.setattr(gbm, "train_tails", spy)
    held = gbm.train_gbm(prepared, num_threads=1, rounds=5, tail_levels=(0.1, 0.9))
    gbm.refit_gbm(prepared, held, num_threads=1)
    assert seen == [0, 0]

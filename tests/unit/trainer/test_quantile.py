"""The LightGBM kinds' quantile model (issue 27's ninth pass): conformalised quantile
boosters on all the sales, widened on days they did not train on."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.support.trainer_config import small_config
from tests.unit.trainer.helpers import make_sales
from trainer.models.quantile import (
    BAND_STARTS,
    Recipe,
    fit_quantile_model,
    heldout_frame,
    widening,
)

CFG = small_config()
RECIPE = Recipe(rounds=30, train_days=150, origin_stride=3, num_threads=1)


def test_the_conformal_quantile_is_the_split_conformal_rank() -> None:
    from trainer.models.intervals import band_index, conformal_quantile

    assert conformal_quantile(np.arange(1.0, 10.0), 0.8) == 8  # rank ceil(10 * 0.8)
    assert conformal_quantile(np.arange(1.0, 4.0), 0.8) == 3  # the rank capped at n
    score = np.array([5.0, 1.0, 3.0, 2.0, 4.0, np.nan, 9.0, 0.0])
    step = np.array([1, 2, 3, 4, 5, 6, 8, 9])  # band 0: the first six; band 1: 8 and 9
    w = widening(score, step, 0.8, len(BAND_STARTS))
    assert w[0] == 5.0  # 5 finite scores: rank ceil(6 * 0.8) = 5, the largest
    assert w[1] == 9.0  # 2 scores: rank min(2, 3) = 2
    assert w[2] == 0.0  # a band without rows: no widening
    assert list(band_index(np.array([1, 7, 8, 14, 15, 28]), BAND_STARTS)) == [0, 0, 1, 1, 2, 2]


def test_the_held_out_band_widens_each_half_by_the_other_halfs_scores() -> None:
    products = ["a", "b", "c", "d"]  # halves in sorted order: a, c | b, d
    small = {"a": 0.0, "c": 0.0}
    frame = pd.DataFrame(
        {
            "product_id": np.repeat(products, 5),
            "target_date": np.tile(pd.date_range("2024-01-01", periods=5), 4),
            "horizon_step": np.tile(np.arange(1, 6), 4),
            "actual": 10.0,
            "q_lo": 8.0,
            "q_hi": 12.0,
        }
    )
    frame["score"] = [small.get(p, 3.0) for p in frame["product_id"]]  # b, d: 3 units out
    out = heldout_frame(frame, 0.8).set_index("product_id")
    # a and c are widened by b and d's scores (3), b and d by a and c's (0)
    assert (out.loc[["a", "c"], "p10"] == 5.0).all() and (out.loc[["a", "c"], "p90"] == 15.0).all()
    assert (out.loc[["b", "d"], "p10"] == 8.0).all() and (out.loc[["b", "d"], "p90"] == 12.0).all()


@pytest.fixture(scope="module")
def fitted():
    sales = make_sales(6, 220, seed=3)
    return sales, fit_quantile_model(sales, CFG, recipe=RECIPE)


def test_the_widening_comes_from_boosters_that_never_saw_the_last_days(fitted) -> None:
    sales, model = fitted
    h = CFG.horizon
    assert model.levels == (0.1, 0.5, 0.9)
    assert len(model.widening) == len(BAND_STARTS)
    last = pd.DatetimeIndex(sorted(sales["date"].unique()))[-h:]
    # the same recipe trained without the last h days forecasts them as the held-out
    # pair did: the band is theirs, widened (never narrowed below them by a positive Q)
    before = sales[sales["date"] < last[0]]
    promos = sales[sales["date"].isin(last) & (sales["on_promotion"] > 0)][["product_id", "date"]]
    past = fit_quantile_model(
        before, CFG, promotions=promos, levels=(0.1, 0.9), conformal=False, recipe=RECIPE
    )
    held = model.heldout.sort_values(["product_id", "target_date"])
    assert list(pd.to_datetime(held["target_date"].unique())) == list(last)
    assert (held["p10"].to_numpy() <= past.future[0.1].reshape(-1) + 1e-12).all()
    assert (held["p90"].to_numpy() >= past.future[0.9].reshape(-1) - 1e-12).all()
    assert not np.allclose(held["p90"], past.future[0.9].reshape(-1))  # it was widened
    # the widening of the first band: the conformal quantile of max(P10 - y, y - P90)
    truth = (
        sales[sales["date"].isin(last)]
        .pivot(index="date", columns="product_id", values="units_sold")
        .reindex(columns=past.products)
        .to_numpy()
        .T
    )
    score = np.maximum(past.future[0.1] - truth, truth - past.future[0.9])[:, :7].ravel()
    rank = math.ceil((score.size + 1) * 0.8)
    assert model.widening[0] == pytest.approx(np.sort(score)[rank - 1])
    # the served boosters saw every day: their forecasts start the day after the sales
    assert model.dates[0] == pd.to_datetime(sales["date"]).max() + pd.Timedelta(days=1)
    assert all(v.shape == (6, h) for v in model.future.values())


def test_a_calibration_serves_the_boosters_widened_and_nothing_else(fitted) -> None:
    from trainer.models.intervals import IntervalCalibration

    _, model = fitted
    residual = IntervalCalibration(
        levels=(0.1, 0.5, 0.9),
        band_starts=BAND_STARTS,
        quantiles=((-1.0, 0.0, 1.0),) * 3,
        scales={"P00": 1.0},
        default_scale=1.0,
        tail_floor=0.01,
        median_point=0.5,
        whole_products=frozenset({"P00"}),
    )
    cal = model.calibration(residual)
    assert cal.tail_floor == 0.0 and cal.median_point == 0.0  # no floor, no mixing
    assert cal.whole_products == residual.whole_products  # the whole-number P50 stays
    w = model.widening[0]
    assert cal.tail_shifts[0] == (-w, 0.0, w)
    tails = {a: np.array([model.future[a][0, 0]]) for a in model.levels}
    got = cal.quantile_values(["P00"], np.array([1]), np.array([100.0]), tails)
    assert got["p10"][0] == pytest.approx(max(0.0, tails[0.1][0] - w))
    assert got["p90"][0] == pytest.approx(tails[0.9][0] + w)
    assert got["p50"][0] == math.floor(tails[0.5][0] + 0.5)  # whole units, not the point
    with pytest.raises(ValueError, match="levels"):
        from dataclasses import replace

        model.calibration(replace(residual, levels=(0.05, 0.5, 0.95)))


def test_too_short_a_history_is_not_conformalised() -> None:
    sales = make_sales(3, 50, seed=1)  # 50 days: no more than 4 horizons
    short = fit_quantile_model(sales, small_config(horizon=14), recipe=RECIPE)
    assert short.widening == () and short.heldout is None
    assert short.shifts() == ((0.0, 0.0, 0.0),) * len(BAND_STARTS)


def test_the_rows_are_capped_with_every_product_kept() -> None:
    from trainer.models.quantile import direct_rows

    sales = make_sales(5, 200, seed=2)
    full = direct_rows(sales, CFG, train_days=150, origin_stride=3)
    capped = direct_rows(sales, CFG, train_days=150, origin_stride=3, max_rows=20 * CFG.horizon)
    assert len(full.y) > 20 * CFG.horizon >= len(capped.y) > 0
    product = full.names.index("product")
    assert set(capped.x[:, product]) == set(full.x[:, product])  # each keeps some windows
    assert capped.products == full.products  # the forecast windows are not capped


def test_a_quantile_model_that_cannot_be_trained_leaves_the_residual_intervals(
    monkeypatch,
) -> None:
    import trainer.models.quantile as quantile
    from trainer.models.challenger import _with_quantile_model

    def fails(*args, **kwargs):
        raise ValueError("no training window for the quantile boosters")

    monkeypatch.setattr(quantile, "fit_quantile_model", fails)
    gbm, intervals = object(), {"lightgbm": "residual", "blend": "residual"}
    served, held, band = _with_quantile_model(gbm, intervals, make_sales(2, 60), CFG, 1)
    assert served is gbm and held is None and band is None
    assert intervals == {"lightgbm": "residual", "blend": "residual"}

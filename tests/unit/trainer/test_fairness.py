"""Fairness: the weight update and the Keras callback move weight toward the worst products.

Also the signal's refinements: trimmed per-product error (one outlier day does not drive
a weight), smoothing across epochs, and validation windows starting more often.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.unit.trainer.helpers import make_sales
from trainer.config import ConfigError, TrainConfig
from trainer.evaluate import per_product_rmsse
from trainer.fairness import (
    FairnessCallback,
    fairness_windows,
    smooth,
    trimmed_rmsse,
    update_weights,
)
from trainer.windowing import Windows


def test_update_moves_weight_to_the_worst_group_and_stays_bounded() -> None:
    log_q = np.zeros(4)
    losses = np.array([1.0, 1.0, 1.0, 3.0])
    log_q, w = update_weights(log_q, losses, eta=0.5, max_weight=3.0)
    assert w[3] > w[0] and np.allclose(w[:3], w[0])
    assert w.mean() == pytest.approx(1.0)
    for _ in range(20):
        log_q, w = update_weights(log_q, losses, eta=0.5, max_weight=3.0)
    assert w.max() <= 3.0 + 1e-9 and w.min() >= 1 / 3 - 1e-9
    assert w[3] == pytest.approx(w.max())


def test_update_is_scale_free_and_ignores_missing_groups() -> None:
    _, w1 = update_weights(np.zeros(3), np.array([1.0, 2.0, np.nan]), eta=0.5, max_weight=5.0)
    _, w2 = update_weights(np.zeros(3), np.array([100.0, 200.0, np.nan]), eta=0.5, max_weight=5.0)
    np.testing.assert_allclose(w1, w2)
    assert w1[1] > w1[0]


def test_trimmed_rmsse_leaves_out_one_outlier_day() -> None:
    # Two products, 20 points each; product 0 has one day 50 units off, otherwise both err by 1.
    actual = np.ones((4, 10))
    actual[0, 3] = 51.0
    pred = np.zeros((4, 10))
    product = np.array([0, 0, 1, 1])
    scale = np.ones(3)
    plain = per_product_rmsse(actual, pred, product, scale, n_products=3)
    trimmed = trimmed_rmsse(actual, pred, product, scale, n_products=3, trim=0.05)
    assert plain[0] > 10 and plain[1] == pytest.approx(1.0)
    np.testing.assert_allclose(trimmed[:2], [1.0, 1.0])
    assert np.isnan(trimmed[2]) and np.isnan(plain[2])  # a product without points
    no_trim = trimmed_rmsse(actual, pred, product, scale, n_products=3, trim=0.0)
    np.testing.assert_allclose(no_trim, plain)
    # A product with one point keeps it, whatever the trim.
    one = trimmed_rmsse(
        np.full((1, 1), 3.0), np.zeros((1, 1)), np.array([0]), scale, n_products=1, trim=0.4
    )
    np.testing.assert_allclose(one, [3.0])


def test_smooth_is_an_ema_that_keeps_the_other_side_of_a_nan() -> None:
    first = smooth(None, np.array([1.0, 2.0, np.nan]), 0.5)
    np.testing.assert_allclose(first, [1.0, 2.0, np.nan])
    second = smooth(first, np.array([3.0, np.nan, 4.0]), 0.5)
    np.testing.assert_allclose(second, [2.0, 2.0, 4.0])
    np.testing.assert_allclose(smooth(second, np.array([0.0, 0.0, 0.0]), 0.0), 0.0)


def test_smoothed_noisy_errors_move_weights_less_than_raw_ones() -> None:
    # Product 0 is worst once (a noisy epoch), product 1 persistently a little worse.
    errors = [np.array([3.0, 1.2, 1.0, 1.0]), *[np.array([1.0, 1.2, 1.0, 1.0])] * 3]
    results = {}
    for ema in (0.0, 0.7):
        log_q, signal, w = np.zeros(4), None, np.ones(4)
        for e in errors:
            signal = smooth(signal, e, ema)
            log_q, w = update_weights(log_q, signal, eta=0.1, max_weight=2.0)
        results[ema] = w
    assert results[0.7][1] > results[0.7][2]  # the persistent error still gains weight
    assert np.all(results[0.7] <= 2.0 + 1e-9) and np.all(results[0.7] >= 0.5 - 1e-9)
    assert results[0.7][0] > results[0.0][0]  # smoothing keeps the noisy spike longer...
    assert results[0.0][0] > results[0.0][2]  # ...but both remember it


def test_fairness_windows_start_more_often_over_the_validation_days() -> None:
    from trainer.pipeline import prepare

    cfg = TrainConfig(lookback=14, horizon=14, val_days=28, test_days=28, min_observations=10)
    prepared = prepare(make_sales(3, 200), cfg)
    assert fairness_windows(prepared, 14) is prepared.val
    w = fairness_windows(prepared, 7)
    origins = np.unique(w.origin)
    np.testing.assert_array_equal(origins, prepared.train_end + np.array([0, 7, 14]))
    assert origins.max() + cfg.horizon <= prepared.val_end  # never into the test days
    assert len(w) == 3 * len(np.unique(w.series))


@pytest.mark.parametrize(
    "field, value", [("fairness_ema", 1.0), ("fairness_trim", 0.5), ("fairness_val_every", 0)]
)
def test_config_rejects_out_of_range_fairness_fields(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


class _Holder:
    product_weight = np.ones(4, dtype=np.float32)


def _windows(n_products: int = 3, horizon: int = 4) -> Windows:
    n = n_products * 2
    return Windows(
        x=np.zeros((n, 5, 2), np.float32),
        known=np.zeros((n, horizon, 1), np.float32),
        y=np.zeros((n, horizon), np.float32),
        level=np.zeros(n, np.float32),
        product=np.repeat(np.arange(1, n_products + 1), 2).astype(np.int32),
        series=np.repeat(np.arange(n_products), 2).astype(np.int32),
        origin=np.zeros(n, np.int32),
        synthetic=np.zeros(n, bool),
        weight=np.ones(n, np.float32),
    )


def _constant_model(horizon: int = 4) -> keras.Model:
    seq = keras.Input((5, 2), name="sequence")
    known = keras.Input((horizon, 1), name="known")
    product = keras.Input((), dtype="int32", name="product")
    out = keras.layers.Dense(horizon, kernel_initializer="zeros", bias_initializer="zeros")(
        keras.layers.Flatten()(seq)
    )
    return keras.Model({"sequence": seq, "known": known, "product": product}, out)


@pytest.mark.parametrize(
    "mitigate, ema, trim", [(True, 0.0, 0.0), (False, 0.0, 0.0), (True, 0.5, 0.1)]
)
def test_callback_reweights_toward_the_worst_product(
    mitigate: bool, ema: float, trim: float
) -> None:
    w = _windows()
    # The model predicts 0 units (mean 0, std 1); product 3 (index 2) sells far more.
    actual = np.repeat(np.array([1.0, 1.0, 6.0]), 2)[:, None] * np.ones((1, 4))
    holder = _Holder()
    holder.product_weight = np.ones(4, dtype=np.float32)
    cb = FairnessCallback(
        w,
        val_actual=actual,
        val_mean=np.zeros(len(w)),
        val_std=np.ones(len(w)),
        scale=np.ones(3),
        products=["a", "b", "c"],
        lookback=5,
        product_weight_target=holder,
        mitigate=mitigate,
        eta=0.5,
        max_weight=3.0,
        ema=ema,
        trim=trim,
    )
    cb.set_model(_constant_model())
    logs: dict = {}
    cb.on_epoch_end(0, logs)
    cb.on_epoch_end(1, logs)
    entry = cb.history.epochs[-1]
    assert entry["worst_product"] == "c"
    assert entry["rmsse"] == [1.0, 1.0, 6.0]
    assert logs["val_rmsse"] == pytest.approx(8 / 3)
    assert logs["val_disparity"] == pytest.approx(np.percentile([1, 1, 6], 90))
    if mitigate:
        weights = holder.product_weight[1:]
        assert weights[2] > weights[0] == pytest.approx(weights[1])
        assert entry["weights"][2] == pytest.approx(float(weights[2]), rel=1e-4)
        first = cb.history.epochs[0]["weights"][2]
        assert entry["weights"][2] >= first  # keeps moving toward the worst product
        assert max(entry["weights"]) <= 3.0 + 1e-4 and min(entry["weights"]) >= 1 / 3 - 1e-4
        assert entry["signal"] == pytest.approx([1.0, 1.0, 6.0])
    else:
        np.testing.assert_array_equal(holder.product_weight, 1.0)
        assert "weights" not in entry

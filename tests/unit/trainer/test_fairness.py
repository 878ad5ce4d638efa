"""Fairness: the weight update and the Keras callback move weight toward the worst products."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer.fairness import FairnessCallback, update_weights
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


@pytest.mark.parametrize("mitigate", [True, False])
def test_callback_reweights_toward_the_worst_product(mitigate: bool) -> None:
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
    else:
        np.testing.assert_array_equal(holder.product_weight, 1.0)
        assert "weights" not in entry

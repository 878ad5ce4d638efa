"""Fairness: online group DRO on training-batch losses, and the per-epoch measurement."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.unit.trainer.helpers import make_sales
from trainer.config import ConfigError, ModelParams, TrainConfig
from trainer.data.windowing import Windows
from trainer.models.fairness import (
    FairnessCallback,
    GroupDROModel,
    dro_weights,
    plain,
    validation_windows,
)


def test_dro_weights_have_mean_one_and_a_floor() -> None:
    w = dro_weights(np.array([0.0, 3.0, -2.0, 0.5]), mix=0.5)
    assert w.mean() == pytest.approx(1.0)
    assert w.min() >= 0.5
    assert np.argmax(w) == 1
    np.testing.assert_allclose(dro_weights(np.zeros(5), 0.3), 1.0)


def _dro_model(n_groups: int = 4, eta: float = 0.1, decay: float = 0.5) -> GroupDROModel:
    seq = keras.Input((5, 2), name="sequence")
    known = keras.Input((3, 1), name="known")
    product = keras.Input((), dtype="int32", name="product")
    out = keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer="zeros")(
        keras.layers.Flatten()(seq)
    )
    model = GroupDROModel(
        {"sequence": seq, "known": known, "product": product},
        out,
        n_groups=n_groups,
        eta=eta,
        decay=decay,
        mix=0.5,
    )
    model.compile(optimizer="adam", loss="mse")
    return model


def test_one_training_step_moves_the_log_weights_by_the_excess_loss_ratio() -> None:
    model = _dro_model()
    x = {
        "sequence": np.zeros((4, 5, 2), np.float32),
        "known": np.zeros((4, 3, 1), np.float32),
        "product": np.array([1, 1, 2, 2], np.int32),
    }
    y = np.array([[2, 2, 2], [2, 2, 2], [1, 1, 1], [3, 3, 3]], np.float32)
    # group 1: forecast 1 (loss 1) against the reference 0 (loss 4): ratio 1/4
    # group 2: forecast 0: loss = reference loss: ratio 1
    y_pred = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]], np.float32)
    loss = float(model.compute_loss(x=x, y=y, y_pred=y_pred, training=True))
    log_q = model.dro_log_q.numpy()
    np.testing.assert_allclose(log_q, [0.0, 0.1 * 0.25, 0.1 * 1.0, 0.0], rtol=1e-5)
    w = dro_weights(log_q, 0.5)
    expected = (2 * w[1] * 1.0 + w[2] * 1.0 + w[2] * 9.0) / 4
    assert loss == pytest.approx(expected, rel=1e-5)
    # outside training: the plain loss, and the weights do not move
    plain_loss = float(model.compute_loss(x=x, y=y, y_pred=y_pred, training=False))
    assert plain_loss == pytest.approx((1 + 1 + 1 + 9) / 4, rel=1e-5)
    np.testing.assert_allclose(model.dro_log_q.numpy(), log_q)
    # a group absent from the batch keeps its log weight; present ones leak by `decay`
    x2 = {**x, "product": np.array([1, 1, 1, 1], np.int32)}
    model.compute_loss(x=x2, y=y, y_pred=y, training=True)  # perfect forecast: ratio 0
    np.testing.assert_allclose(
        model.dro_log_q.numpy(), [0.0, 0.5 * 0.025, 0.1, 0.0], rtol=1e-5, atol=1e-7
    )
    assert isinstance(plain(model), keras.Model)
    assert not isinstance(plain(model), GroupDROModel)


@pytest.fixture(scope="module")
def prepared():
    from trainer.data.prepare import prepare

    cfg = TrainConfig(
        lookback=14, horizon=14, val_days=28, test_days=28, min_observations=10, epochs=2
    )
    return prepare(make_sales(3, 200), cfg)


def test_validation_windows_start_more_often_over_the_validation_days(prepared) -> None:
    cfg = prepared.cfg
    assert validation_windows(prepared, 14) is prepared.val
    w = validation_windows(prepared, 7)
    origins = np.unique(w.origin)
    np.testing.assert_array_equal(origins, prepared.train_end + np.array([0, 7, 14]))
    assert origins.max() + cfg.horizon <= prepared.val_end  # never into the test days
    assert len(w) == 3 * len(np.unique(w.series))


@pytest.mark.slow
@pytest.mark.parametrize("fairness", [True, False])
def test_training_with_dro_records_mean_one_weights_and_returns_a_plain_model(
    prepared, fairness: bool, tmp_path
) -> None:
    from trainer.models.lstm import predict_split, train

    trained = train(prepared, ModelParams(units=4, lookback=14), fairness=fairness, verbose=False)
    assert not isinstance(trained.model, GroupDROModel)
    epochs = trained.fairness_history["epochs"]
    assert len(epochs) == trained.epochs_run
    if fairness:
        for entry in epochs:
            assert np.mean(entry["weights"]) == pytest.approx(1.0, abs=0.02)
            assert min(entry["weights"]) >= 0.5 - 1e-6
    else:
        assert all("weights" not in e for e in epochs)
    path = tmp_path / "m.keras"
    trained.model.save(path)
    loaded = keras.models.load_model(path)
    a = predict_split(trained.model, prepared, "test")["predicted"].to_numpy()
    b = predict_split(loaded, prepared, "test")["predicted"].to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5)


@pytest.mark.parametrize(
    "field, value", [("fairness_decay", 1.0), ("fairness_mix", 1.5), ("val_origin_every", 0)]
)
def test_config_rejects_out_of_range_fairness_fields(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


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


def test_callback_measures_per_product_rmsse_and_the_worst_decile() -> None:
    w = _windows()
    # The model predicts 0 units (mean 0, std 1); product 3 (index 2) sells far more.
    actual = np.repeat(np.array([1.0, 1.0, 6.0]), 2)[:, None] * np.ones((1, 4))
    cb = FairnessCallback(
        w,
        val_actual=actual,
        val_mean=np.zeros(len(w)),
        val_std=np.ones(len(w)),
        scale=np.ones(3),
        products=["a", "b", "c"],
        lookback=5,
    )
    cb.set_model(_constant_model())
    logs: dict = {}
    cb.on_epoch_end(0, logs)
    entry = cb.history.epochs[-1]
    assert entry["worst_product"] == "c"
    assert entry["rmsse"] == [1.0, 1.0, 6.0]
    assert logs["val_rmsse"] == pytest.approx(8 / 3)
    assert logs["val_worst_decile"] == pytest.approx(6.0)
    assert logs["val_disparity"] == pytest.approx(np.percentile([1, 1, 6], 90))
    assert "weights" not in entry

"""The Keras model and its weighted data feed."""

from __future__ import annotations

import numpy as np

from trainer.config import ModelParams
from trainer.data.windowing import Windows
from trainer.models.network import WeightedWindowData, build_model


def windows(n: int = 10, lookback: int = 6, horizon: int = 3) -> Windows:
    rng = np.random.default_rng(0)
    return Windows(
        x=rng.normal(size=(n, lookback, 4)).astype(np.float32),
        known=rng.normal(size=(n, horizon, 2)).astype(np.float32),
        y=rng.normal(size=(n, horizon)).astype(np.float32),
        level=np.zeros(n, np.float32),
        product=(np.arange(n) % 2 + 1).astype(np.int32),
        series=(np.arange(n) % 2).astype(np.int32),
        origin=np.arange(n, dtype=np.int32),
        synthetic=np.zeros(n, bool),
        weight=np.ones(n, np.float32),
    )


def test_model_outputs_one_value_per_horizon_day() -> None:
    params = ModelParams(units=4, lookback=4, activation="relu", dropout=0.2, learning_rate=0.01)
    model = build_model(params, n_features=4, n_known=2, horizon=3, n_products=2)
    w = windows()
    out = model.predict(w.inputs(4), verbose=0)
    assert out.shape == (10, 3)
    assert model.get_layer("lstm").units == 4
    assert model.optimizer.learning_rate.numpy() == np.float32(0.01)


def test_data_feed_gives_the_windows_weights_and_slices_the_lookback() -> None:
    w = windows()
    w = w.with_weight(np.where(w.product == 2, 2.5, 1.0))
    data = WeightedWindowData(w, lookback=4, batch_size=4, seed=0)
    assert len(data) == 3
    inputs, _, weight = data[0]
    assert inputs["sequence"].shape == (4, 4, 4)
    np.testing.assert_array_equal(weight, np.where(inputs["product"] == 2, 2.5, 1.0))
    seen = np.concatenate([data[i][1] for i in range(len(data))])
    assert seen.shape == w.y.shape  # every window once per epoch

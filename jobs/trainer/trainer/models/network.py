"""The network: a Keras LSTM with a direct multi-output head, and its training data feed.

Inputs: `sequence` (lookback days × features) into an LSTM; `product` (embedding
index) into an embedding; `known` (horizon days × known-in-advance features). The LSTM
state and the product embedding are repeated for each of the H forecast days and joined
with that day's known features; one small dense head, shared by all days, gives each
day's standardised forecast. All H outputs come from one pass (direct, not recursive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from trainer.config import ModelParams
from trainer.data.windowing import Windows


@dataclass(frozen=True)
class DROSettings:
    """Online group DRO's step size, leak and uniform mix (see `trainer.models.fairness`)."""

    eta: float = 0.01
    decay: float = 0.01
    mix: float = 0.5


def build_model(
    params: ModelParams,
    *,
    n_features: int,
    n_known: int,
    horizon: int,
    n_products: int,
    dro: DROSettings | None = None,
) -> keras.Model:
    """A compiled model (Adam, MSE) for windows of `params.lookback` days.

    With `dro`, a `GroupDROModel` (training loss re-weighted per product by online
    group DRO); `trainer.models.fairness.plain(model)` is the same network as a plain model.
    """
    sequence = keras.Input((params.lookback, n_features), name="sequence")
    known = keras.Input((horizon, n_known), name="known")
    product = keras.Input((), dtype="int32", name="product")
    state = keras.layers.LSTM(
        params.units, activation=params.activation, dropout=params.dropout, name="lstm"
    )(sequence)
    embedded = keras.layers.Embedding(
        n_products + 1, params.embedding_dim, name="product_embedding"
    )(product)
    context = keras.layers.Concatenate(name="context")([state, embedded])
    per_day = keras.layers.Concatenate(name="per_day")(
        [keras.layers.RepeatVector(horizon, name="repeat")(context), known]
    )
    hidden = keras.layers.Dense(params.units, activation=params.activation, name="head")(per_day)
    hidden = keras.layers.Dropout(params.dropout, name="head_dropout")(hidden)
    out = keras.layers.Reshape((horizon,), name="forecast")(
        keras.layers.Dense(1, name="out")(hidden)
    )
    inputs = {"sequence": sequence, "known": known, "product": product}
    if dro is None:
        model = keras.Model(inputs, out)
    else:
        from trainer.models.fairness import GroupDROModel

        model = GroupDROModel(
            inputs, out, n_groups=n_products + 1, eta=dro.eta, decay=dro.decay, mix=dro.mix
        )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate, clipnorm=1.0),
        loss="mse",
    )
    return model


class WeightedWindowData(keras.utils.PyDataset):
    """Shuffled training batches with the windows' sample weights (`Windows.weight`)."""

    def __init__(self, windows: Windows, *, lookback: int, batch_size: int, seed: int) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.windows = windows
        self.lookback = lookback
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(windows))

    def __len__(self) -> int:
        return math.ceil(len(self.windows) / self.batch_size)

    def __getitem__(self, index: int):
        idx = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        w = self.windows
        start = w.x.shape[1] - self.lookback
        inputs = {"sequence": w.x[idx, start:], "known": w.known[idx], "product": w.product[idx]}
        return inputs, w.y[idx], w.weight[idx]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.windows))

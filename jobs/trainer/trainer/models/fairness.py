"""Fairness-aware training: online group DRO on training-batch losses, and its measurement.

**Mitigation** (`GroupDROModel`, on with `TrainConfig.fairness`): at every training step
the batch's loss is re-weighted toward the groups (products) that the model currently
serves worst *relative to a reference*, as in group DRO (Sagawa et al. 2020, online
exponentiated-gradient weights), with two changes that keep it stable on 118 small,
noisy groups:

- the group's signal is its *excess* loss over a reference forecaster on the same
  windows, as a ratio: `sum(model loss) / sum(reference loss)` over the group's samples
  in the batch. The reference is the window's level, i.e. the 28-day moving average
  (the model's targets are relative to it, so its loss is `mean(y^2)`). A product that
  is merely noisy has a large loss for both and is not up-weighted; one the network
  forecasts worse than a moving average is;
- the log-weights are leaky (`log q <- (1 - decay) log q + eta * signal` for the groups
  in the batch), so they track the recent signal instead of growing without bound
  (`eta / decay` is the temperature: 1 by default), and the weights are mixed with
  uniform ones, `w = (1 - mix) * G * softmax(log q) + mix`: every group keeps at least
  `mix` and the mean over groups is exactly 1.

The signal comes from the training batches, never from the validation windows that
early stopping, tuning and the bias correction use.

**Measurement** (`FairnessCallback`): after every epoch, each product's RMSSE on the
validation windows, the disparity (p90 / median), the worst decile and the worst
product, logged and kept in the history (`val_rmsse`, `val_disparity`,
`val_worst_decile` in the Keras logs, for the tuner's pruning). With DRO on, the
history also keeps the per-product weights at the end of each epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from forecastguard.logs import get_logger
from trainer.data.windowing import Windows, make_windows
from trainer.judge.evaluate import disparity, per_product_rmsse

if TYPE_CHECKING:
    from trainer.types import Prepared

log = get_logger(__name__)


def dro_weights(log_q: np.ndarray, mix: float) -> np.ndarray:
    """Group weights from log-weights: `(1 - mix) * G * softmax(log q) + mix` (mean 1)."""
    z = np.asarray(log_q, dtype=float)
    q = np.exp(z - z.max())
    q /= q.sum()
    return (1.0 - mix) * q.size * q + mix


@keras.saving.register_keras_serializable(package="forecastguard")
class GroupDROModel(keras.Model):
    """A functional model whose training loss is re-weighted by online group DRO.

    Built with `GroupDROModel(inputs, outputs, n_groups=..., eta=..., decay=..., mix=...)`;
    groups are the `product` input (embedding index). Only training steps are
    re-weighted: validation loss and predictions are the plain model's. Save
    `plain(model)` (an ordinary functional model over the same layers).
    """

    def __init__(
        self,
        *args: Any,
        n_groups: int = 1,
        eta: float = 0.01,
        decay: float = 0.01,
        mix: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.n_groups = int(n_groups)
        self.eta = float(eta)
        self.decay = float(decay)
        self.mix = float(mix)
        self.dro_log_q = self.add_weight(
            shape=(self.n_groups,), initializer="zeros", trainable=False, name="dro_log_q"
        )

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """The plain loss outside training; in training, the DRO-weighted loss."""
        if not training or x is None or y is None:
            return super().compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
        from keras import ops

        group = ops.cast(ops.reshape(x["product"], (-1,)), "int32")
        y = ops.cast(y, y_pred.dtype)
        loss = ops.mean(ops.square(y - y_pred), axis=-1)  # (B,)
        ref = ops.mean(ops.square(y), axis=-1)  # the moving average's loss on the window
        base = (
            ops.ones_like(loss)
            if sample_weight is None
            else ops.cast(ops.reshape(sample_weight, (-1,)), loss.dtype)
        )
        g = self.n_groups
        num = ops.segment_sum(ops.stop_gradient(loss) * base, group, num_segments=g)
        den = ops.segment_sum(ref * base, group, num_segments=g)
        count = ops.segment_sum(base, group, num_segments=g)
        present = count > 0
        signal = ops.where(present, num / ops.maximum(den, 1e-6), 0.0)
        log_q = self.dro_log_q
        new = ops.where(present, (1.0 - self.decay) * log_q + self.eta * signal, log_q)
        self.dro_log_q.assign(new)
        q = ops.softmax(new)
        weights = (1.0 - self.mix) * float(g) * q + self.mix
        w = ops.take(weights, group) * base
        return ops.sum(w * loss) / ops.maximum(ops.sum(base), 1e-6)

    def group_weights(self) -> np.ndarray:
        """The current per-group weights (mean 1 over groups)."""
        return dro_weights(np.asarray(self.dro_log_q.numpy()), self.mix)

    def get_config(self) -> dict[str, Any]:
        """Keras config (with the DRO settings)."""
        return {
            **super().get_config(),
            "n_groups": self.n_groups,
            "eta": self.eta,
            "decay": self.decay,
            "mix": self.mix,
        }


def plain(model: keras.Model) -> keras.Model:
    """The same layers as an ordinary functional model (what is saved and served)."""
    if isinstance(model, GroupDROModel):
        return keras.Model(model.input, model.output, name="forecaster")
    return model


def validation_windows(prepared: Prepared, every: int) -> Windows:
    """Windows over the validation days whose origins start every `every` days.

    With `every >= horizon` these are the validation split's own windows.
    """
    cfg = prepared.cfg
    if every >= cfg.horizon:
        return prepared.val
    origins = np.arange(prepared.train_end, prepared.val_end - cfg.horizon + 1, every)
    real = np.flatnonzero(~prepared.panel.synthetic)
    return make_windows(prepared.arrays, origins, cfg.lookback, cfg.horizon, series=real)


@dataclass
class FairnessHistory:
    """Per epoch: disparity figures (and, with DRO, the product weights)."""

    products: list[str]
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable history."""
        return {"products": self.products, "epochs": self.epochs}


def _rounded(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 5) for v in values]


class FairnessCallback(keras.callbacks.Callback):
    """Measures per-product validation RMSSE after each epoch (it never re-weights)."""

    def __init__(
        self,
        val: Windows,
        *,
        val_actual: np.ndarray,
        val_mean: np.ndarray,
        val_std: np.ndarray,
        scale: np.ndarray,
        products: list[str],
        lookback: int,
    ) -> None:
        super().__init__()
        self.val = val
        self.val_actual = val_actual
        self.val_mean = val_mean
        self.val_std = val_std
        self.scale = scale
        self.lookback = lookback
        self.products = products
        self.history = FairnessHistory(products=list(products))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        z = self.model.predict(self.val.inputs(self.lookback), verbose=0, batch_size=1024)
        z = z + self.val.level[:, None]
        pred = np.clip(z * self.val_std[:, None] + self.val_mean[:, None], 0.0, None)
        n = len(self.products)
        product = self.val.product - 1
        rmsse = per_product_rmsse(self.val_actual, pred, product, self.scale, n_products=n)
        disp = disparity(rmsse, self.products)
        entry: dict[str, Any] = {"epoch": epoch + 1, **disp}
        if isinstance(self.model, GroupDROModel):
            entry["weights"] = [round(float(w), 5) for w in self.model.group_weights()[1:]]
        entry["rmsse"] = _rounded(rmsse)
        self.history.epochs.append(entry)
        if logs is not None:
            logs["val_rmsse"] = disp["mean_rmsse"]
            logs["val_disparity"] = disp["p90_over_median"]
            logs["val_worst_decile"] = disp["worst_decile_rmsse"]
        extra = {
            "epoch": epoch + 1,
            "val_rmsse": round(disp["mean_rmsse"], 4),
            "worst_decile_rmsse": round(disp["worst_decile_rmsse"], 4),
            "disparity_p90_over_median": round(disp["p90_over_median"], 4),
            "worst_product": disp["worst_product"],
            "worst_rmsse": round(disp["worst_rmsse"], 4),
        }
        if "weights" in entry:
            extra["max_weight"] = round(max(entry["weights"]), 3)
        log.info("fairness after epoch", extra=extra)

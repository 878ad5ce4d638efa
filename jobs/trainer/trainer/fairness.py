"""Fairness-aware training: per-product validation error after each epoch, and re-weighting.

After every epoch the callback forecasts its validation windows, computes each product's
RMSSE (scale-free, so products of any volume compare), logs the disparity (90th
percentile over median, and the worst product) and — when mitigation is on — updates
group-DRO-style exponentiated weights from a *signal* per product:

- the signal is the product's RMSSE, optionally *trimmed* (`trim`: the largest fraction
  of its squared errors left out, so one outlier day does not drive its weight) and
  smoothed across epochs by an exponential moving average (`ema`: weight of the previous
  epochs' signal, 0 = none), so the weights follow persistent rather than noisy errors;
- `log q_p += eta * signal_p / median(signal)`, `q = softmax(log q)`, product weight
  `w_p = P * q_p` bounded to `[1/max_weight, max_weight]` and scaled to mean 1.

The training samples of product p get weight `w_p` in the next epoch. The validation
windows may start more often than the validation split's own (every `horizon` days):
`fairness_windows` builds windows every `every` days over the validation days, which
gives each product more forecast origins and a less noisy error. The weight and
disparity history is kept for the artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from forecastguard.logs import get_logger
from trainer.evaluate import disparity, per_product_rmsse
from trainer.windowing import Windows, make_windows

if TYPE_CHECKING:
    from trainer.types import Prepared

log = get_logger(__name__)


def update_weights(
    log_q: np.ndarray, losses: np.ndarray, *, eta: float, max_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """One exponentiated-gradient step: (new log q, bounded weights with mean 1).

    `losses` are per-group errors; they are divided by their median so `eta` does not
    depend on the error's scale. Groups with a NaN loss keep their log q.
    """
    losses = np.asarray(losses, dtype=float)
    med = np.nanmedian(losses) if np.any(np.isfinite(losses)) else 1.0
    rel = np.where(np.isfinite(losses), losses / (med if med > 0 else 1.0), 0.0)
    log_q = log_q + eta * rel
    log_q = log_q - log_q.max()
    q = np.exp(log_q) / np.exp(log_q).sum()
    w = np.clip(q * q.size, 1.0 / max_weight, max_weight)
    w = np.clip(w / w.mean(), 1.0 / max_weight, max_weight)
    return log_q, w


def trimmed_rmsse(
    actual: np.ndarray,
    predicted: np.ndarray,
    product: np.ndarray,
    scale: np.ndarray,
    *,
    n_products: int,
    trim: float,
) -> np.ndarray:
    """Per-product RMSSE without the largest `trim` fraction of each product's squared errors.

    `trim=0` is `per_product_rmsse`. At most `floor(trim * n)` of a product's `n` points
    are left out, so a product keeps at least one point.
    """
    if trim <= 0:
        return per_product_rmsse(actual, predicted, product, scale, n_products=n_products)
    sq = ((np.asarray(actual) - np.asarray(predicted)) ** 2).reshape(len(product), -1)
    out = np.full(n_products, np.nan)
    for p in np.unique(product):
        v = np.sort(sq[product == p].reshape(-1))
        k = min(int(np.floor(trim * v.size)), v.size - 1)
        out[p] = np.sqrt(v[: v.size - k].mean() / scale[p])
    return out


def smooth(previous: np.ndarray | None, current: np.ndarray, ema: float) -> np.ndarray:
    """Exponential moving average across epochs; NaN on either side keeps the other."""
    current = np.asarray(current, dtype=float)
    if previous is None or ema <= 0:
        return current
    mixed = ema * previous + (1.0 - ema) * current
    return np.where(np.isfinite(previous), np.where(np.isfinite(current), mixed, previous), current)


def fairness_windows(prepared: Prepared, every: int) -> Windows:
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
    """Per epoch: disparity figures and the product weights used for the next epoch."""

    products: list[str]
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable history."""
        return {"products": self.products, "epochs": self.epochs}


def _rounded(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 5) for v in values]


class FairnessCallback(keras.callbacks.Callback):
    """Measures per-product validation RMSSE each epoch and (optionally) re-weights training.

    `product_weight_target` is the object whose `product_weight` array (indexed by
    embedding index) the training batches read — a `WeightedWindowData`.
    """

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
        product_weight_target: Any,
        mitigate: bool,
        eta: float,
        max_weight: float,
        ema: float = 0.0,
        trim: float = 0.0,
    ) -> None:
        super().__init__()
        self.val = val
        self.val_actual = val_actual
        self.val_mean = val_mean
        self.val_std = val_std
        self.scale = scale
        self.lookback = lookback
        self.target = product_weight_target
        self.mitigate = mitigate
        self.eta = eta
        self.max_weight = max_weight
        self.ema = ema
        self.trim = trim
        self.products = products
        self.log_q = np.zeros(len(products))
        self.signal: np.ndarray | None = None
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
        if self.mitigate:
            error = trimmed_rmsse(
                self.val_actual, pred, product, self.scale, n_products=n, trim=self.trim
            )
            self.signal = smooth(self.signal, error, self.ema)
            self.log_q, weights = update_weights(
                self.log_q, self.signal, eta=self.eta, max_weight=self.max_weight
            )
            self.target.product_weight[1:] = weights.astype(np.float32)
            entry["weights"] = [round(float(w), 5) for w in weights]
            entry["signal"] = _rounded(self.signal)
        entry["rmsse"] = _rounded(rmsse)
        self.history.epochs.append(entry)
        if logs is not None:
            logs["val_rmsse"] = disp["mean_rmsse"]
            logs["val_disparity"] = disp["p90_over_median"]
        log.info(
            "fairness after epoch",
            extra={
                "epoch": epoch + 1,
                "val_rmsse": round(disp["mean_rmsse"], 4),
                "disparity_p90_over_median": round(disp["p90_over_median"], 4),
                "worst_product": disp["worst_product"],
                "worst_rmsse": round(disp["worst_rmsse"], 4),
                "max_weight": round(float(self.target.product_weight[1:].max()), 3),
            },
        )

"""Fairness-aware training: per-product validation error after each epoch, and re-weighting.

After every epoch the callback forecasts the validation windows, computes each product's
RMSSE (scale-free, so products of any volume compare), logs the disparity (90th
percentile over median, and the worst product) and — when mitigation is on — updates
group-DRO-style exponentiated weights: `log q_p += eta * rmsse_p / median(rmsse)`,
`q = softmax(log q)`, product weight `w_p = P * q_p` bounded to `[1/max_weight,
max_weight]` and scaled to mean 1. The training samples of product p get weight `w_p`
in the next epoch. The weight and disparity history is kept for the artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from forecastguard.logs import get_logger
from trainer.evaluate import disparity, per_product_rmsse
from trainer.windowing import Windows

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


@dataclass
class FairnessHistory:
    """Per epoch: disparity figures and the product weights used for the next epoch."""

    products: list[str]
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable history."""
        return {"products": self.products, "epochs": self.epochs}


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
        self.products = products
        self.log_q = np.zeros(len(products))
        self.history = FairnessHistory(products=list(products))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        z = self.model.predict(self.val.inputs(self.lookback), verbose=0, batch_size=1024)
        z = z + self.val.level[:, None]
        pred = np.clip(z * self.val_std[:, None] + self.val_mean[:, None], 0.0, None)
        rmsse = per_product_rmsse(
            self.val_actual, pred, self.val.product - 1, self.scale, n_products=len(self.products)
        )
        disp = disparity(rmsse, self.products)
        entry: dict[str, Any] = {"epoch": epoch + 1, **disp}
        if self.mitigate:
            self.log_q, weights = update_weights(
                self.log_q, rmsse, eta=self.eta, max_weight=self.max_weight
            )
            self.target.product_weight[1:] = weights.astype(np.float32)
            entry["weights"] = [round(float(w), 5) for w in weights]
        entry["rmsse"] = [None if not np.isfinite(r) else round(float(r), 5) for r in rmsse]
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

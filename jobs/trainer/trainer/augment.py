"""Augmentation: synthetic training series for sparse products.

Each synthetic series takes a sparse product's training days and, for every day, a
random point between that day's value and the next day's (interpolation between
neighbouring values), plus Gaussian noise scaled to the product's standard deviation,
clipped at 0. It keeps the product's dates and promotions, is marked `synthetic`, and
only ever yields training windows: never validation, test or any metric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger
from trainer.config import TrainConfig

log = get_logger(__name__)


def synthetic_series_id(product_id: str, copy: int) -> str:
    """The series id of a product's `copy`-th synthetic series."""
    return f"{product_id}~syn{copy}"


def augment(
    clean: pd.DataFrame,
    sparse_products: list[str],
    train_end: pd.Timestamp,
    cfg: TrainConfig,
) -> pd.DataFrame:
    """Synthetic series for `sparse_products`, from days before `train_end` only.

    Returns a long frame with `series_id`, `product_id`, `date`, `units_sold`,
    `on_promotion` and `synthetic` (True), empty when there is nothing to augment.
    """
    columns = ["series_id", "product_id", "date", "units_sold", "on_promotion", "synthetic"]
    if not sparse_products or cfg.augment_copies == 0:
        return pd.DataFrame(columns=columns)
    rng = np.random.default_rng(cfg.seed)
    train = clean[(clean["date"] < train_end) & clean["product_id"].isin(sparse_products)]
    pieces = []
    for pid, g in train.groupby("product_id", sort=True):
        x = g["units_sold"].to_numpy(dtype=float)
        if x.size < 2:
            continue
        nxt = np.append(x[1:], x[-2])  # the last day interpolates toward its previous one
        scale = cfg.augment_noise * (float(x.std()) or 1.0)
        for copy in range(cfg.augment_copies):
            u = rng.uniform(0.0, 1.0, size=x.size)
            values = (1.0 - u) * x + u * nxt + rng.normal(0.0, scale, size=x.size)
            pieces.append(
                pd.DataFrame(
                    {
                        "series_id": synthetic_series_id(str(pid), copy),
                        "product_id": str(pid),
                        "date": g["date"].to_numpy(),
                        "units_sold": np.clip(values, 0.0, None),
                        "on_promotion": g["on_promotion"].to_numpy(),
                        "synthetic": True,
                    }
                )
            )
    if not pieces:
        return pd.DataFrame(columns=columns)
    out = pd.concat(pieces, ignore_index=True)
    log.info(
        "augmented sparse products",
        extra={"products": len(sparse_products), "synthetic_series": len(pieces), "rows": len(out)},
    )
    return out

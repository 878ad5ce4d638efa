"""Augmentation: synthetic training series for sparse products, at a bounded share.

Each synthetic series takes a sparse product's training days and, for every day, a
random point between that day's value and the next day's (interpolation between
neighbouring values), plus Gaussian noise scaled to the product's standard deviation,
clipped at 0. It keeps the product's dates and promotions, is marked `synthetic`, and
only ever yields training windows: never validation, test or any metric.

Bound: synthetic windows are at most `cfg.max_synthetic_share` of the training windows.
A synthetic series has its product's listed days, so it yields exactly as many training
windows as its product; copies are added product by product (first copy of every sparse
product, then the second, ...) while the share stays within the cap. When the cap cuts
copies, `Augmentation.summary["capped"]` is true and says so; when more than half the
training would have been synthetic (`wanted_share` > 0.5) the quality report lists a
failure (`mostly_synthetic`) that blocks promotion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger
from trainer.config import TrainConfig
from trainer.data.windowing import origins_every

log = get_logger(__name__)

COLUMNS = ["series_id", "product_id", "date", "units_sold", "on_promotion", "synthetic"]


@dataclass(frozen=True)
class Augmentation:
    """The synthetic series (long frame of `COLUMNS`) and the figures of the bound."""

    frame: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def synthetic_series_id(product_id: str, copy: int) -> str:
    """The series id of a product's `copy`-th synthetic series."""
    return f"{product_id}~syn{copy}"


def training_windows_per_product(
    clean: pd.DataFrame, train_end: pd.Timestamp, cfg: TrainConfig
) -> pd.Series:
    """Training windows each product yields (the rule of `windowing.make_windows`).

    A window at origin o needs the product listed (a row in `clean`) the day before o
    and on every target day; origins as `prepare` makes them (every `train_stride` days).
    """
    start = clean["date"].min()
    calendar = pd.date_range(start, train_end - pd.Timedelta(days=1), freq="D")
    origins = origins_every(cfg.lookback, len(calendar), cfg.train_stride, cfg.horizon)
    out: dict[str, int] = {}
    train = clean[clean["date"] < train_end]
    for pid, g in train.groupby("product_id", sort=True):
        listed = np.zeros(len(calendar), dtype=np.int64)
        listed[calendar.get_indexer(g["date"])] = 1
        if not origins.size:
            out[str(pid)] = 0
            continue
        csum = np.concatenate(([0], np.cumsum(listed)))
        targets = csum[origins + cfg.horizon] - csum[origins] == cfg.horizon
        out[str(pid)] = int((targets & (listed[origins - 1] == 1)).sum())
    return pd.Series(out, dtype=np.int64)


def plan_copies(
    windows: pd.Series, sparse: list[str], copies: int, max_share: float
) -> tuple[dict[str, int], dict[str, Any]]:
    """Copies per sparse product within the cap, and the bound's figures."""
    real = int(windows.sum())
    budget = int(np.floor(max_share / (1.0 - max_share) * real)) if max_share > 0 else 0
    usable = [p for p in sorted(sparse) if int(windows.get(p, 0)) > 0]
    wanted = copies * int(sum(int(windows[p]) for p in usable))
    plan = dict.fromkeys(usable, 0)
    used = 0
    for _ in range(copies):
        for p in usable:
            if used + int(windows[p]) <= budget:
                plan[p] += 1
                used += int(windows[p])
    summary = {
        "max_share": max_share,
        "sparse_products": len(sparse),
        "real_windows": real,
        "wanted_windows": wanted,
        "wanted_share": round(wanted / (real + wanted), 4) if real + wanted else 0.0,
        "synthetic_windows": used,
        "synthetic_series": int(sum(plan.values())),
        "share": round(used / (real + used), 4) if real + used else 0.0,
        "capped": used < wanted,
    }
    return {p: n for p, n in plan.items() if n}, summary


def augment(
    clean: pd.DataFrame,
    sparse_products: list[str],
    train_end: pd.Timestamp,
    cfg: TrainConfig,
) -> Augmentation:
    """Synthetic series for `sparse_products`, from days before `train_end` only.

    `Augmentation.frame` has `series_id`, `product_id`, `date`, `units_sold`,
    `on_promotion` and `synthetic` (True), empty when there is nothing to augment;
    `.summary` the figures of the bound (see the module docstring).
    """
    windows = training_windows_per_product(clean, train_end, cfg)
    plan, summary = plan_copies(
        windows, sparse_products, cfg.augment_copies, cfg.max_synthetic_share
    )
    rng = np.random.default_rng(cfg.seed)
    train = clean[(clean["date"] < train_end) & clean["product_id"].isin(list(plan))]
    pieces = []
    for pid, g in train.groupby("product_id", sort=True):
        x = g["units_sold"].to_numpy(dtype=float)
        if x.size < 2:
            continue
        nxt = np.append(x[1:], x[-2])  # the last day interpolates toward its previous one
        scale = cfg.augment_noise * (float(x.std()) or 1.0)
        for copy in range(plan[str(pid)]):
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
    if summary["capped"]:
        log.warning("augmentation capped", extra=summary)
    if not pieces:
        return Augmentation(pd.DataFrame(columns=COLUMNS), summary)
    out = pd.concat(pieces, ignore_index=True)
    log.info("augmented sparse products", extra=summary | {"rows": len(out)})
    return Augmentation(out, summary)

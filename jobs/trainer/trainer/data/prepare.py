"""Preparation: the sales made ready to train on — quality ▸ augmentation ▸ features ▸ windows.

`prepare(sales, cfg) -> Prepared`: `.quality` (QualityReport, `.to_dict()`),
`.pipeline` (FeaturePipeline, `save(dir)`/`load(dir)`), `.train`/`.val`/`.test`
(`Windows`: x, known, y (relative to `level`), level, product, series, origin,
synthetic, weight; `.inputs(lookback)` gives the model's input dict),
`.refit_windows()` (train + validation, for the final refit), `.products`,
`.feature_names`, `.known_names`, `.split_dates()`, `.new_products` (first sold
after the training days: left out, forecast as unknown products).
Windows are built for `cfg.lookback` days; a model with a shorter
`ModelParams.lookback` uses the last days of each (so the tuner can prepare once with
the longest lookback it searches).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger, timed
from trainer.config import TrainConfig
from trainer.data.augment import augment
from trainer.data.features import FeaturePipeline, build_panel
from trainer.data.load import DataError
from trainer.data.quality import check_quality
from trainer.data.windowing import make_windows, origins_every
from trainer.judge.evaluate import rmsse_scale
from trainer.types import Prepared

__all__ = ["prepare"]

log = get_logger(__name__)


def prepare(sales: pd.DataFrame, cfg: TrainConfig) -> Prepared:
    """Quality, augmentation (training days only), features and windows of the sales."""
    with timed(log, "stage quality", stage="quality") as out:
        qres = check_quality(sales, cfg)
        out.update(qres.report.totals())
    clean = qres.clean
    calendar = pd.date_range(clean["date"].min(), clean["date"].max(), freq="D")
    n_days = len(calendar)
    train_end = n_days - cfg.val_days - cfg.test_days
    need = cfg.lookback + cfg.horizon + cfg.val_days + cfg.test_days
    if train_end < cfg.lookback + cfg.horizon:
        raise DataError(
            f"{n_days} days of sales are too few: lookback {cfg.lookback} + horizon "
            f"{cfg.horizon} + validation {cfg.val_days} + test {cfg.test_days} needs {need}"
        )
    val_end = n_days - cfg.test_days
    # Products first sold after the training days have nothing to fit on: they are left
    # out here and forecast as unknown products (median statistics, "unknown" embedding).
    first = clean.groupby("product_id")["date"].min()
    new_products = tuple(sorted(first.index[first >= calendar[train_end]].astype(str)))
    if new_products:
        clean = clean[~clean["product_id"].isin(new_products)]
        log.warning(
            "products without training days left out",
            extra={"products": list(new_products), "count": len(new_products)},
        )

    with timed(log, "stage augment", stage="augment") as out:
        aug = augment(clean, qres.report.sparse_products, calendar[train_end], cfg)
        synthetic = aug.frame
        out.update(synthetic_rows=len(synthetic), synthetic_share=aug.summary["share"])
    with timed(log, "stage features", stage="features") as out:
        panel = build_panel(clean, synthetic)
        pipe = FeaturePipeline.fit(panel, train_end, cfg.holiday_country)
        arrays = pipe.transform(panel)
        out.update(series=len(panel.series_ids), days=n_days, features=len(pipe.feature_names))
    real = np.flatnonzero(~panel.synthetic)
    scale = rmsse_scale(panel.units[real, :train_end])

    with timed(log, "stage windowing", stage="windowing") as out:
        L, H = cfg.lookback, cfg.horizon
        train = make_windows(
            arrays,
            origins_every(L, train_end, cfg.train_stride, H),
            L,
            H,
            synthetic=panel.synthetic,
            max_windows=cfg.max_train_windows,
        )
        val = make_windows(arrays, np.arange(train_end, val_end, H), L, H, series=real)
        test = make_windows(arrays, np.arange(val_end, n_days, H), L, H, series=real)
        out.update(
            train=len(train), val=len(val), test=len(test), synthetic=int(train.synthetic.sum())
        )
    if not len(train) or not len(val):
        raise DataError(
            f"no {'training' if not len(train) else 'validation'} window: products need "
            f"{L + H} listed days before the split"
        )
    return Prepared(
        cfg=cfg,
        quality=qres.report.with_augmentation(aug.summary),
        pipeline=pipe,
        panel=panel,
        arrays=arrays,
        train_end=train_end,
        val_end=val_end,
        scale=scale,
        train=train,
        val=val,
        test=test,
        new_products=new_products,
        sales=sales,
    )

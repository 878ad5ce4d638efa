"""The pipeline's data types: `Prepared` (what `prepare` makes) and `Trained` (what `train` makes).

A module of their own, so the stages that only need the types (fairness, evaluate,
explain, tuning, promotion) import them without importing the orchestrator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.config import ModelParams, TrainConfig
from trainer.data.features import FeatureArrays, FeaturePipeline, Panel
from trainer.data.quality import QualityReport
from trainer.data.windowing import Windows, make_windows, origins_every

if TYPE_CHECKING:
    import keras
    import pandas as pd

__all__ = ["SPLITS", "Prepared", "Trained"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Prepared:
    """Everything `prepare` produces; the input of `train`, `predict_split` and `evaluate`."""

    cfg: TrainConfig
    quality: QualityReport
    pipeline: FeaturePipeline
    panel: Panel
    arrays: FeatureArrays
    train_end: int  # calendar index of the first validation day
    val_end: int  # calendar index of the first test day
    scale: np.ndarray  # (P,) RMSSE denominators, in `products` order
    train: Windows
    val: Windows
    test: Windows
    new_products: tuple[str, ...] = ()  # first sold after training: left out (unknown)
    # the sales as given to `prepare` (the interval's quantile model trains on them all:
    # `trainer.models.quantile`); None: not kept
    sales: pd.DataFrame | None = None

    @property
    def products(self) -> tuple[str, ...]:
        """The real products, in embedding order (index 1..P)."""
        return self.pipeline.products

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the sequence features (the last axis of `Windows.x`)."""
        return self.pipeline.feature_names

    @property
    def known_names(self) -> tuple[str, ...]:
        """Names of the known-in-advance features (the last axis of `Windows.known`)."""
        return (*self.pipeline.known_names, "horizon_step")

    def windows(self, split: str) -> Windows:
        """The windows of "train", "val" or "test"."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, split)

    def refit_windows(self, through: str = "val") -> Windows:
        """Training windows over the days up to the end of split `through` ("val": train +
        validation; "test": every day), for a final refit."""
        stops = {"val": self.val_end, "test": len(self.panel.calendar)}
        if through not in stops:
            raise ValueError(f"through must be one of {tuple(stops)}, got {through!r}")
        origins = origins_every(
            self.cfg.lookback, stops[through], self.cfg.train_stride, self.cfg.horizon
        )
        return make_windows(
            self.arrays,
            origins,
            self.cfg.lookback,
            self.cfg.horizon,
            synthetic=self.panel.synthetic,
        )

    def split_dates(self) -> dict[str, str]:
        """First and last day of each split (ISO dates)."""
        cal = self.panel.calendar
        fmt = "%Y-%m-%d"
        return {
            "train_start": cal[0].strftime(fmt),
            "train_end": cal[self.train_end - 1].strftime(fmt),
            "val_start": cal[self.train_end].strftime(fmt),
            "val_end": cal[self.val_end - 1].strftime(fmt),
            "test_start": cal[self.val_end].strftime(fmt),
            "test_end": cal[-1].strftime(fmt),
        }


@dataclass
class Trained:
    """A trained model and what its training recorded."""

    model: keras.Model
    params: ModelParams
    fairness: bool
    history: dict[str, list[float]]
    fairness_history: dict[str, Any]
    val_metrics: dict[str, Any]
    best_epoch: int
    epochs_run: int
    duration_s: float
    extra: dict[str, Any] = field(default_factory=dict)

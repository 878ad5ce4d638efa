"""The trainer's settings the unit tests train with: seconds, not minutes."""

from __future__ import annotations

from typing import Any

from trainer.config import TrainConfig

SMALL: dict[str, Any] = {
    "horizon": 7,
    "lookback": 14,
    "val_days": 14,
    "test_days": 14,
    "epochs": 1,
    "batch_size": 64,
    "min_observations": 30,
    "augment_copies": 0,
}


def small_config(**overrides: Any) -> TrainConfig:
    """A `TrainConfig` of a week's horizon on two-week windows, one epoch and no
    augmentation; `overrides` replace or add fields."""
    return TrainConfig(**(SMALL | overrides))

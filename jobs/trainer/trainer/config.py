"""Training configuration: `TrainConfig` (the run) and `ModelParams` (the network).

Both are frozen dataclasses whose fields are plain JSON types, so `dataclasses.asdict`
gives what goes into `metrics.json`/the manifest, and `from_dict` reads it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Self

LAGS: tuple[int, ...] = (1, 7, 14, 28)
ROLLING_WINDOWS: tuple[int, ...] = (7, 28)
ACTIVATIONS = ("tanh", "relu", "elu", "gelu", "swish")


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field."""


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}")
    values = dict(data)
    for f in fields(cls):
        # JSON has no tuples: lists come back as lists.
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


@dataclass(frozen=True)
class TrainConfig:
    """How a training run prepares the data, splits it and trains.

    Split (time-ordered, never shuffled across time): the last `test_days` days of the
    calendar are the test set, the `val_days` before them validation, the rest training.
    Both are whole multiples of `horizon`: validation and test forecasts start every
    `horizon` days, so each day of those sets is forecast exactly once.
    """

    horizon: int = 28
    lookback: int = 28
    val_days: int = 56
    test_days: int = 56
    train_stride: int = 2  # days between the origins of consecutive training windows
    # at most this many training windows (0: all), an equal share per series, spread
    # evenly over each series' origins (the latest always in); the LSTM trains on them
    # and LightGBM draws its rows from them. The pasta data has 97,822 (unaffected).
    max_train_windows: int = 150_000
    epochs: int = 12
    batch_size: int = 256
    patience: int = 3
    seed: int = 42
    holiday_country: str = "IT"
    min_observations: int = 180  # fewer observed days than this: a "sparse" product
    max_gap_days: int = 7  # a run of missing days longer than this is a "large gap"
    augment_copies: int = 3  # synthetic series per sparse product (training only)
    augment_noise: float = 0.1  # noise scale, as a fraction of the product's std
    max_synthetic_share: float = 0.2  # synthetic windows: at most this share of training
    closure_dates: tuple[str, ...] = ()  # store calendar: YYYY-MM-DD dates, weekday names
    fairness: bool = True
    fairness_eta: float = 0.01  # online group DRO: step size per training batch
    fairness_decay: float = 0.01  # leak of the DRO log-weights per batch (eta/decay = temperature)
    fairness_mix: float = 0.5  # DRO weights mixed with uniform ones: every product keeps >= mix
    val_origin_every: int = 7  # days between validation forecast origins (bias fit, measurement)
    moving_average_days: int = 28  # the moving-average baseline's window
    bias_shrinkage: float = 1.0  # k: multiplier of each product's noise in the offsets' shrinkage
    gbm_refit: bool = True  # serve LightGBM refitted on every day with the validated rounds
    # LightGBM ensemble: one member per training-history length in days (0: all history)
    gbm_history_days: tuple[int, ...] = (364, 546, 728, 1092)
    # forecast intervals (trainer.models.intervals): quantile levels served beside the point
    # forecast, and the pseudo-days of the group prior in each product's noise scale
    interval_levels: tuple[float, ...] = (0.1, 0.5, 0.9)
    interval_shrinkage: float = 28.0

    def __post_init__(self) -> None:
        positive = (
            "horizon",
            "lookback",
            "train_stride",
            "epochs",
            "batch_size",
            "moving_average_days",
            "val_origin_every",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.horizon > 361:
            raise ConfigError(
                f"TrainConfig.horizon must be <= 361 (last-year feature), got {self.horizon}"
            )
        for name in ("val_days", "test_days"):
            value = getattr(self, name)
            if value < self.horizon or value % self.horizon:
                raise ConfigError(
                    f"TrainConfig.{name}={value} must be a positive multiple of horizon={self.horizon}"
                )
        if (
            self.patience < 0
            or self.augment_copies < 0
            or self.min_observations < 0
            or self.max_train_windows < 0
        ):
            raise ConfigError(
                "TrainConfig.patience, augment_copies, min_observations and max_train_windows "
                "must be >= 0"
            )
        if self.max_gap_days < 1:
            raise ConfigError(f"TrainConfig.max_gap_days must be >= 1, got {self.max_gap_days}")
        if self.augment_noise < 0 or self.fairness_eta < 0 or self.bias_shrinkage < 0:
            raise ConfigError(
                "TrainConfig.augment_noise, fairness_eta and bias_shrinkage must be >= 0"
            )
        if not self.gbm_history_days or any(d < 0 for d in self.gbm_history_days):
            raise ConfigError(
                "TrainConfig.gbm_history_days must be one or more day counts >= 0 (0: all "
                f"history), got {self.gbm_history_days}"
            )
        if not self.interval_levels or any(not 0 < a < 1 for a in self.interval_levels):
            raise ConfigError(
                f"TrainConfig.interval_levels must be levels in (0, 1), got {self.interval_levels}"
            )
        if self.interval_shrinkage < 0:
            raise ConfigError(
                f"TrainConfig.interval_shrinkage must be >= 0, got {self.interval_shrinkage}"
            )
        if not 0 <= self.max_synthetic_share < 1:
            raise ConfigError(
                f"TrainConfig.max_synthetic_share must be in [0, 1), got {self.max_synthetic_share}"
            )
        if not 0 <= self.fairness_decay < 1 or not 0 <= self.fairness_mix <= 1:
            raise ConfigError(
                "TrainConfig.fairness_decay must be in [0, 1) and fairness_mix in [0, 1], "
                f"got {self.fairness_decay} and {self.fairness_mix}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of `to_dict`; unknown fields are an error."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ModelParams:
    """The network's hyper-parameters (what the tuner searches)."""

    units: int = 64
    dropout: float = 0.2
    activation: str = "tanh"
    learning_rate: float = 1e-3
    lookback: int = 28
    embedding_dim: int = 8

    def __post_init__(self) -> None:
        if self.units < 1 or self.lookback < 1 or self.embedding_dim < 1:
            raise ConfigError("ModelParams.units, lookback and embedding_dim must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ModelParams.dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"ModelParams.activation={self.activation!r} is not one of {ACTIVATIONS}"
            )
        if not self.learning_rate > 0:
            raise ConfigError(f"ModelParams.learning_rate must be > 0, got {self.learning_rate}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of `to_dict`; unknown fields are an error."""
        return _from_dict(cls, data)

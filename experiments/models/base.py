"""What a forecaster is given and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from experiments.data import Panel

QUANTILE_LEVELS = (0.1, 0.5, 0.9)  # scored: columns q10, q50, q90 (NaN: none given)


@dataclass(frozen=True)
class ForecastTask:
    """One forecast origin: the history up to the cutoff and what is known about the future.

    Promotions are planned ahead, so the horizon's promotion flags are given to every
    model that can use them; the horizon's sales are not.
    """

    history: Panel  # days up to and including the cutoff
    future_dates: pd.DatetimeIndex  # (H,) the days to forecast
    future_promo: np.ndarray  # (H, N) 0/1

    @property
    def horizon(self) -> int:
        """Days to forecast."""
        return len(self.future_dates)


@dataclass
class Forecast:
    """A model's point forecasts for one task, with notes for the report."""

    values: np.ndarray  # (H, N) units, >= 0
    notes: dict[str, Any] = field(default_factory=dict)
    # Other forecasts the same fit produced, scored as models of their own (e.g. the
    # trainer's plain and DRO LSTMs, its LightGBM): name -> (H, N) units.
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    cpu_seconds: float | None = None  # CPU time spent outside this process (worker pools)
    # Forecast quantiles: level (0.1, 0.5, 0.9) -> (H, N) units; for `extra` forecasts,
    # their name -> the same.
    quantiles: dict[float, np.ndarray] = field(default_factory=dict)
    extra_quantiles: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)


class Forecaster(Protocol):
    """A model the harness can backtest: fit on the history, forecast the horizon."""

    name: str

    def forecast(self, task: ForecastTask) -> Forecast:
        """Point forecasts (H, N) in units for the task's products and days."""
        ...


def seasonal_naive_values(units: np.ndarray, horizon: int, season: int = 7) -> np.ndarray:
    """(H, N): each day gets the value of the same weekday in the history's last week."""
    last = units[-season:]
    reps = -(-horizon // season)
    return np.tile(last, (reps, 1))[:horizon]

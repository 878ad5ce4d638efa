"""Seasonal naive: next week looks like last week (the baseline every model must beat)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.models.base import Forecast, ForecastTask, seasonal_naive_values


@dataclass
class SeasonalNaive:
    """Repeat the last `season` days of the history over the horizon."""

    season: int = 7
    name: str = "seasonal_naive"

    def forecast(self, task: ForecastTask) -> Forecast:
        """Forecast by repeating the last season (closed days count as zero sales)."""
        values = seasonal_naive_values(task.history.filled, task.horizon, self.season)
        return Forecast(values=np.clip(values, 0.0, None))

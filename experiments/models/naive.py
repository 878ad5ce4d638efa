"""Seasonal naive: next week looks like last week (the baseline every model must beat).

Its quantiles are empirical: for step h the forecast repeats the day 7·k days earlier
(k = ceil(h / 7)), so its error is distributed like the history's `y_t − y_{t−7k}`; the
quantiles of those differences over the last `quantile_days` days, per product and k,
are added to the point forecast (clipped at 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.models.base import (
    QUANTILE_LEVELS,
    Forecast,
    ForecastTask,
    seasonal_naive_values,
)


def empirical_quantiles(
    filled: np.ndarray,
    point: np.ndarray,
    levels: tuple[float, ...] = QUANTILE_LEVELS,
    season: int = 7,
    days: int = 364,
) -> dict[float, np.ndarray]:
    """{level: (H, N)} seasonal-naive quantiles from the history's seasonal differences."""
    h = point.shape[0]
    hist = filled[-(days + season * -(-h // season)) :]
    out = {a: np.empty_like(point, dtype=float) for a in levels}
    for k in range(1, -(-h // season) + 1):
        lag = season * k
        diff = hist[lag:] - hist[:-lag]  # (T - lag, N)
        q = np.quantile(diff[-days:], levels, axis=0)  # (L, N)
        rows = slice(season * (k - 1), min(h, season * k))
        for i, a in enumerate(levels):
            out[a][rows] = point[rows] + q[i][None, :]
    return {a: np.clip(v, 0.0, None) for a, v in out.items()}


@dataclass
class SeasonalNaive:
    """Repeat the last `season` days of the history over the horizon."""

    season: int = 7
    name: str = "seasonal_naive"

    def forecast(self, task: ForecastTask) -> Forecast:
        """Forecast by repeating the last season (closed days count as zero sales)."""
        values = seasonal_naive_values(task.history.filled, task.horizon, self.season)
        values = np.clip(values, 0.0, None)
        quantiles = empirical_quantiles(task.history.filled, values, season=self.season)
        return Forecast(values=values, quantiles=quantiles)

"""The rolling-origin backtest: the same cutoffs and horizon for every model.

A cutoff is the last day a model may see. For each cutoff, every model gets the same
`ForecastTask` (history up to the cutoff, the horizon's dates and promotions) and
returns (H, N) forecasts, which are compared with what was sold on days that have a
record. Scales for RMSSE/MASE come from each cutoff's own history, so nothing from
the test window leaks into the scoring.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from experiments.data import Panel
from experiments.metrics import scales
from experiments.models.base import QUANTILE_LEVELS, Forecaster, ForecastTask
from forecastguard.logs import get_logger

log = get_logger(__name__)


def cutoff_indices(n_days: int, horizon: int, n_cutoffs: int, step: int | None = None) -> list[int]:
    """Calendar indices of the cutoffs, oldest first; the last test window ends the data.

    Cutoff k's test window is days (c, c + horizon]; consecutive cutoffs are `step`
    days apart (default: `horizon`, so the test windows tile the end of the data).
    """
    step = horizon if step is None else step
    if horizon < 1 or n_cutoffs < 1 or step < 1:
        raise ValueError("horizon, n_cutoffs and step must be >= 1")
    last = n_days - 1 - horizon
    cutoffs = [last - k * step for k in range(n_cutoffs - 1, -1, -1)]
    if cutoffs[0] < 2 * horizon:
        raise ValueError(
            f"{n_days} days are too few for {n_cutoffs} cutoffs {step} days apart with horizon {horizon}"
        )
    return cutoffs


def cutoffs_at(dates: pd.DatetimeIndex, wanted: Sequence[str], horizon: int) -> list[int]:
    """Calendar indices of the cutoff dates `wanted` (the last day each model sees)."""
    out = []
    for text in wanted:
        day = pd.Timestamp(text)
        if day not in dates:
            raise ValueError(
                f"cutoff {text} is not a day of the data ({dates[0].date()} – {dates[-1].date()})"
            )
        idx = int(dates.get_loc(day))
        if idx + horizon >= len(dates):
            raise ValueError(f"cutoff {text}: fewer than {horizon} days follow it")
        if idx < 2 * horizon:
            raise ValueError(f"cutoff {text}: fewer than {2 * horizon} days precede it")
        out.append(idx)
    return sorted(set(out))


def make_task(panel: Panel, cutoff: int, horizon: int) -> ForecastTask:
    """The task for one cutoff (calendar index of the last visible day)."""
    end = cutoff + 1
    return ForecastTask(
        history=panel.upto(end),
        future_dates=panel.dates[end : end + horizon],
        future_promo=panel.promo[end : end + horizon],
    )


@dataclass
class BacktestResult:
    """Everything the metrics and the report need."""

    forecasts: pd.DataFrame  # model, cutoff, product_id, date, step, actual, forecast
    scales: pd.DataFrame  # cutoff, product_id, rmsse_scale, mase_scale
    timings: pd.DataFrame  # model, cutoff, wall_s, cpu_s
    notes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # model -> per cutoff
    cutoffs: list[pd.Timestamp] = field(default_factory=list)
    horizon: int = 0
    products: tuple[str, ...] = ()
    n_cutoffs: int = 0  # planned


def quantile_column(level: float) -> str:
    """The forecasts frame's column of quantile `level` (0.1 -> "q10")."""
    return f"q{round(level * 100):d}"


def _frame(
    model: str,
    task: ForecastTask,
    actual: np.ndarray,
    values: np.ndarray,
    quantiles: dict[float, np.ndarray] | None = None,
) -> pd.DataFrame:
    h, n = values.shape
    frame = pd.DataFrame(
        {
            "model": model,
            "cutoff": task.history.dates[-1],
            "product_id": np.tile(np.array(task.history.products, dtype=object), h),
            "date": np.repeat(task.future_dates.to_numpy(), n),
            "step": np.repeat(np.arange(1, h + 1), n),
            "actual": actual.reshape(-1),
            "forecast": values.reshape(-1),
        }
    )
    for level in QUANTILE_LEVELS:
        q = (quantiles or {}).get(level)
        if q is None:
            frame[quantile_column(level)] = np.nan
            continue
        q = np.asarray(q, dtype=float)
        if q.shape != values.shape or not np.all(np.isfinite(q)):
            raise ValueError(f"{model}: quantile {level} forecast is malformed")
        frame[quantile_column(level)] = q.reshape(-1)
    return frame


def run_backtest(
    panel: Panel,
    models: Sequence[Forecaster],
    *,
    horizon: int = 28,
    n_cutoffs: int = 3,
    step: int | None = None,
    cutoff_dates: Sequence[str] | None = None,
    on_cutoff: Callable[[BacktestResult], None] | None = None,
) -> BacktestResult:
    """Backtest every model on the same cutoffs; log progress per model and cutoff.

    `on_cutoff`, if given, is called with the results so far after every cutoff (the
    command line rewrites its report then, so a long run leaves partial results).
    """
    cutoffs = (
        cutoffs_at(panel.dates, cutoff_dates, horizon)
        if cutoff_dates
        else cutoff_indices(len(panel.dates), horizon, n_cutoffs, step)
    )
    frames: list[pd.DataFrame] = []
    scale_frames: list[pd.DataFrame] = []
    timing_rows: list[dict[str, Any]] = []
    notes: dict[str, list[dict[str, Any]]] = {m.name: [] for m in models}
    for c_no, cutoff in enumerate(cutoffs, start=1):
        task = make_task(panel, cutoff, horizon)
        actual = panel.units[cutoff + 1 : cutoff + 1 + horizon]
        rmsse_scale, mase_scale = scales(task.history.units)
        scale_frames.append(
            pd.DataFrame(
                {
                    "cutoff": panel.dates[cutoff],
                    "product_id": list(panel.products),
                    "rmsse_scale": rmsse_scale,
                    "mase_scale": mase_scale,
                    # the WSPL weight: units sold over the history's last 28 days
                    "sales_28": np.nansum(task.history.units[-28:], axis=0),
                }
            )
        )
        for model in models:
            log.info(
                "forecasting",
                extra={
                    "model": model.name,
                    "cutoff": str(panel.dates[cutoff].date()),
                    "cutoff_no": c_no,
                },
            )
            wall0, cpu0 = time.perf_counter(), time.process_time()
            result = model.forecast(task)
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0 + (result.cpu_seconds or 0.0)
            values = np.asarray(result.values, dtype=float)
            if values.shape != actual.shape:
                raise ValueError(
                    f"{model.name} returned shape {values.shape}, expected {actual.shape}"
                )
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{model.name} returned non-finite forecasts")
            frames.append(_frame(model.name, task, actual, values, result.quantiles))
            for name, extra in result.extra.items():
                extra = np.asarray(extra, dtype=float)
                if extra.shape != actual.shape or not np.all(np.isfinite(extra)):
                    raise ValueError(f"{model.name}: extra forecast {name} is malformed")
                frames.append(_frame(name, task, actual, extra, result.extra_quantiles.get(name)))
            timing_rows.append(
                {"model": model.name, "cutoff": panel.dates[cutoff], "wall_s": wall, "cpu_s": cpu}
            )
            notes[model.name].append({"cutoff": str(panel.dates[cutoff].date()), **result.notes})
            log.info(
                "forecast done",
                extra={
                    "model": model.name,
                    "cutoff": str(panel.dates[cutoff].date()),
                    "wall_s": round(wall, 2),
                    "cpu_s": round(cpu, 2),
                    **{k: v for k, v in result.notes.items() if isinstance(v, int | float | str)},
                },
            )
        so_far = BacktestResult(
            forecasts=pd.concat(frames, ignore_index=True),
            scales=pd.concat(scale_frames, ignore_index=True),
            timings=pd.DataFrame(timing_rows),
            notes=notes,
            cutoffs=[panel.dates[c] for c in cutoffs[:c_no]],
            n_cutoffs=len(cutoffs),
            horizon=horizon,
            products=panel.products,
        )
        if on_cutoff is not None:
            on_cutoff(so_far)
    return so_far

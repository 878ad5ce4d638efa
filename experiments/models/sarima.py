"""SARIMA per product (statsmodels SARIMAX, weekly seasonality), fixed or ADF-chosen differencing.

Both variants fit SARIMA(1, d, 1)(0, 1, 1)_7 with the promotion flag as an exogenous
regressor (known in advance) on the last `history_days` days of each product:

- `sarima`: d = 1, the textbook choice.
- `sarima_adf`: d is the smallest of 0, 1, 2 for which the augmented Dickey-Fuller test
  (statsmodels `adfuller`, AIC lag choice) rejects a unit root at `adf_alpha` on the
  weekly-differenced series the model will see (the seasonal difference is fixed).

The only difference between the two is the non-seasonal differencing order, so the
comparison isolates what the ADF test buys. Products are fitted in a process pool; a
fit that fails (or a series with no sales) falls back to the seasonal naive forecast
and is counted in the notes.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from experiments.models.base import Forecast, ForecastTask, seasonal_naive_values

SEASON = 7


def adf_order(y: np.ndarray, *, alpha: float = 0.05, max_d: int = 2, season: int = SEASON) -> int:
    """Smallest d (0..max_d) whose d-times differenced, weekly-differenced `y` passes ADF."""
    from statsmodels.tsa.stattools import adfuller

    x = y[season:] - y[:-season]
    for d in range(max_d + 1):
        if x.size < 20 or np.ptp(x) == 0:
            return d
        pvalue = adfuller(x, autolag="AIC", result_object=True).pvalue
        if pvalue < alpha:
            return d
        x = np.diff(x)
    return max_d


@dataclass(frozen=True)
class _Job:
    y: np.ndarray  # history (days,)
    x: np.ndarray  # promo over history (days,)
    x_future: np.ndarray  # promo over the horizon (H,)
    d: int | None  # None: choose by ADF
    adf_alpha: float
    maxiter: int


def _fit_one(job: _Job) -> tuple[np.ndarray | None, int, str | None, float]:
    """(forecast or None, d used, error message, CPU seconds) for one product."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    cpu0 = time.process_time()
    horizon = job.x_future.size
    try:
        if np.ptp(job.y) == 0:
            raise ValueError("constant series")
        d = adf_order(job.y, alpha=job.adf_alpha) if job.d is None else job.d
        use_exog = np.ptp(job.x) > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            model = SARIMAX(
                job.y,
                exog=job.x[:, None] if use_exog else None,
                order=(1, d, 1),
                seasonal_order=(0, 1, 1, SEASON),
            )
            fit = model.fit(disp=False, maxiter=job.maxiter)
            pred = fit.forecast(horizon, exog=job.x_future[:, None] if use_exog else None)
        pred = np.asarray(pred, dtype=float)
        if pred.shape != (horizon,) or not np.all(np.isfinite(pred)):
            raise ValueError("non-finite forecast")
        return np.clip(pred, 0.0, None), d, None, time.process_time() - cpu0
    except Exception as exc:  # any failed fit falls back to seasonal naive (counted)
        return None, -1, f"{type(exc).__name__}: {exc}", time.process_time() - cpu0


def _single_thread() -> None:
    """Worker initialiser: one BLAS thread per process (the pool provides parallelism)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@dataclass
class Sarima:
    """SARIMA(1, d, 1)(0, 1, 1)_7 + promotion per product; `adf=True` chooses d by ADF."""

    adf: bool = False
    history_days: int = 728
    n_jobs: int = 2
    adf_alpha: float = 0.05
    maxiter: int = 50
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = "sarima_adf" if self.adf else "sarima"

    def _jobs(self, task: ForecastTask) -> list[_Job]:
        hist = task.history
        units, promo = hist.filled[-self.history_days :], hist.promo[-self.history_days :]
        observed = hist.observed[-self.history_days :]
        jobs = []
        for j in range(units.shape[1]):
            # A product listed late starts at its first record, not in a run of fill zeros.
            first = int(np.argmax(observed[:, j])) if observed[:, j].any() else units.shape[0]
            jobs.append(
                _Job(
                    y=units[first:, j],
                    x=promo[first:, j],
                    x_future=task.future_promo[:, j],
                    d=None if self.adf else 1,
                    adf_alpha=self.adf_alpha,
                    maxiter=self.maxiter,
                )
            )
        return jobs

    def forecast(self, task: ForecastTask) -> Forecast:
        """Fit every product (in a pool of `n_jobs` processes) and forecast the horizon."""
        jobs = self._jobs(task)
        if self.n_jobs > 1:
            # spawn, not fork: the parent may already run torch/TensorFlow thread pools.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                self.n_jobs, mp_context=ctx, initializer=_single_thread
            ) as pool:
                results = list(pool.map(_fit_one, jobs, chunksize=4))
            worker_cpu = sum(r[3] for r in results)
        else:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):  # threaded BLAS only slows these small matrices down
                results = [_fit_one(job) for job in jobs]
            worker_cpu = 0.0  # already counted by the harness's process_time
        fallback = seasonal_naive_values(task.history.filled, task.horizon, SEASON)
        values = np.empty((task.horizon, len(jobs)))
        orders: list[int] = []
        failures: list[str] = []
        for j, (pred, d, error, _) in enumerate(results):
            if pred is None:
                values[:, j] = np.clip(fallback[:, j], 0.0, None)
                failures.append(f"{task.history.products[j]}: {error}")
            else:
                values[:, j] = pred
                orders.append(d)
        notes = {
            "fallbacks": len(failures),
            "d_counts": {str(k): orders.count(k) for k in sorted(set(orders))},
            "history_days": self.history_days,
        }
        if failures:
            notes["fallback_reasons"] = failures[:10]
        return Forecast(values=values, notes=notes, cpu_seconds=worker_cpu)

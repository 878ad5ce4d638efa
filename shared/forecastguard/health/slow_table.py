"""The joint likelihood of (r₁, placebo ratio) under AR(1) errors with a slow component.

The level test (`stats.drift_decision`) models each product's errors as an AR(1) with
coefficient φ (on `PHI_GRID`) plus a slow AR(1) component (coefficient `PHI_SLOW`) that
holds a share ω (on `OMEGA_GRID`) of the variance, and fits the distribution of (φ, ω)
across products. The evidence about a product's (φ, ω) is the pair

- r₁: the lag-1 autocorrelation within the reference and the window, each around its own
  mean (`stats.lag1_r`; a slow component raises it a little), and
- the placebo ratio: the reference's last B windows' worth of days split into B blocks
  of the window's length; the variance of the block means times the block length over
  the variance within the blocks (`stats.placebo_ratio`) — about 1 for independent
  errors, (1 + φ)/(1 - φ) for an AR(1), far more when a slow component moves the level
  from block to block. Only the reference is used: a change in the window does not
  enter it.

Their joint distribution is tabulated once by simulation (Gaussian series, stationary
start, the weekday means removed as the check removes them), for a ladder of block
lengths and block counts, and shipped as `slow_table.npz`. Regenerate (deterministic,
a few minutes):

    .venv/bin/python -m forecastguard.health.slow_table
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from forecastguard.health.phi_table import PHI_GRID

PHI_SLOW = 0.99
OMEGA_GRID = np.array([0.0, 0.1, 0.2, 0.35, 0.5])
BLOCK_DAYS = np.array([14, 30, 60])  # block (= window) lengths tabulated
BLOCKS = np.array([2, 3, 6])  # blocks in the reference tabulated
R_EDGES = np.linspace(-1.0, 1.0, 51)  # 50 bins of r₁
LOG_EDGES = np.linspace(-4.0, 6.0, 26)  # 25 bins of the log placebo ratio
N_SIMS = 20_000
SEED = 20231
PATH = Path(__file__).with_name("slow_table.npz")
_FLOOR = 1e-6  # no (φ, ω) is impossible: a floor on every bin's probability
MIN_PRESENT = 0.8  # a product's errors at least this share of its configuration's days


def _ar1(rng: np.random.Generator, phi: float, n_sims: int, length: int) -> np.ndarray:
    """Stationary Gaussian AR(1) series of unit variance."""
    from scipy.signal import lfilter

    e = rng.standard_normal((n_sims, length))
    e[:, 0] /= np.sqrt(1.0 - phi * phi)
    return lfilter([np.sqrt(1.0 - phi * phi)], [1.0, -phi], e, axis=1)


def simulate(
    phi: float, omega: float, block: int, blocks: int, n_sims: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(r₁, placebo ratio) of `n_sims` series: a reference of `blocks` x `block` days and
    a window of `block` days, weekday means removed (pooled over both periods)."""
    from forecastguard.health import stats

    m = blocks * block
    length = m + block
    x = np.sqrt(1.0 - omega) * _ar1(rng, phi, n_sims, length)
    if omega > 0:
        x += np.sqrt(omega) * _ar1(rng, PHI_SLOW, n_sims, length)
    if length >= stats.MIN_WEEKDAY_ADJUST:
        wd = np.arange(length) % 7
        means = np.stack([x[:, wd == d].mean(axis=1) for d in range(7)], axis=1)
        x = x - (means - x.mean(axis=1, keepdims=True))[:, wd]
    r1, _ = stats.lag1_r(x, m)
    ratio = stats.placebo_ratio(x[:, :m], block)
    return r1, ratio


def build(n_sims: int = N_SIMS, seed: int = SEED) -> np.ndarray:
    """The probability table (len(BLOCK_DAYS) x len(BLOCKS) x K x W x r1 bins x log-ratio
    bins), each (φ, ω) cell summing to 1, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    shape = (len(BLOCK_DAYS), len(BLOCKS), len(PHI_GRID), len(OMEGA_GRID))
    table = np.empty((*shape, len(R_EDGES) - 1, len(LOG_EDGES) - 1))
    kernel = np.array([0.25, 0.5, 0.25])
    for i, block in enumerate(BLOCK_DAYS):
        for j, blocks in enumerate(BLOCKS):
            for k, phi in enumerate(PHI_GRID):
                for w, omega in enumerate(OMEGA_GRID):
                    r1, ratio = simulate(
                        float(phi), float(omega), int(block), int(blocks), n_sims, rng
                    )
                    hist, _, _ = np.histogram2d(
                        np.clip(r1, -0.999, 0.999),
                        np.clip(np.log(np.maximum(ratio, 1e-300)), -3.999, 5.999),
                        bins=(R_EDGES, LOG_EDGES),
                    )
                    # A little smoothing across neighbouring bins (simulation noise).
                    for axis in (0, 1):
                        hist = np.apply_along_axis(np.convolve, axis, hist, kernel, "same")
                    prob = hist / hist.sum()
                    table[i, j, k, w] = np.maximum(prob, _FLOOR)
                    table[i, j, k, w] /= table[i, j, k, w].sum()
    return table


@lru_cache(maxsize=1)
def table() -> np.ndarray:
    """The shipped probability table (see `build`), float64."""
    with np.load(PATH) as f:
        return f["prob"].astype(np.float64)


@lru_cache(maxsize=1)
def _flat() -> np.ndarray:
    """The table as (configurations x r1 bins x log-ratio bins) x (K * W) rows."""
    t = table()
    nb, nj, k, w, nr, nl = t.shape
    flat = t.reshape(nb * nj, k * w, nr, nl).transpose(0, 2, 3, 1).reshape(-1, k * w)
    return np.ascontiguousarray(flat)


def configuration(window_days: int, ref_days: int) -> int:
    """The table's configuration (block length x block count) nearest a window of
    `window_days` and a reference of `ref_days`; -1 where the reference holds fewer than
    two windows (no placebo)."""
    blocks = ref_days // max(window_days, 1)
    if blocks < 2:
        return -1
    i = int(np.abs(np.log(window_days) - np.log(BLOCK_DAYS)).argmin())
    j = int(np.abs(np.log(blocks) - np.log(BLOCKS)).argmin())
    return i * len(BLOCKS) + j


def configuration_days(config: int) -> int:
    """The days (reference and window) of a configuration."""
    i, j = divmod(config, len(BLOCKS))
    return int(BLOCK_DAYS[i] * (BLOCKS[j] + 1))


def cells(config: np.ndarray, r1: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Each product's flat cell index (configuration, r1 bin, log-ratio bin) of the
    table; -1 where its configuration is -1 or its ratio is not finite."""
    config = np.asarray(config, dtype=np.int64)
    nr, nl = len(R_EDGES) - 1, len(LOG_EDGES) - 1
    rb = np.clip(np.searchsorted(R_EDGES, np.nan_to_num(r1), side="right") - 1, 0, nr - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        lr = np.log(np.where(ratio > 0, ratio, 1e-300))
    lb = np.clip(np.searchsorted(LOG_EDGES, np.nan_to_num(lr), side="right") - 1, 0, nl - 1)
    ok = (config >= 0) & np.isfinite(ratio)
    return np.where(ok, (config * nr + rb) * nl + lb, -1)


def likelihood(cell: np.ndarray) -> np.ndarray:
    """(products x (K * W)): the probability of each product's cell under each (φ, ω),
    flat index k * W + w; `cell` >= 0 (`cells`)."""
    return _flat()[cell]


if __name__ == "__main__":
    np.savez_compressed(PATH, prob=build().astype(np.float32))
    print(f"wrote {PATH}")

"""The sampling distribution of the lag-1 autocorrelation r₁ of AR(1) forecast errors.

The level test (`stats.level_decision`) treats each product's AR(1) coefficient φ as
unknown and fits the distribution of φ across products; for that it needs the
likelihood of a product's observed r₁ under every φ on `PHI_GRID`. It is tabulated once
by simulation (Gaussian AR(1), stationary start, two periods of equal length each
centred on its own mean, r₁ over the pairs within the periods — exactly what
`stats.lag1_r` computes) for a ladder of total lengths, and shipped as `phi_table.npz`.

Regenerate (deterministic, about a minute):

    .venv/bin/python -m forecastguard.health.phi_table
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

PHI_GRID = np.round(np.arange(0.0, 0.951, 0.05), 2)  # 20 values, 0 .. 0.95
SIZES = np.array([10, 14, 20, 28, 40, 60, 90, 120, 180, 240])  # total errors, two periods
R_EDGES = np.linspace(-1.0, 1.0, 101)  # 100 bins of r₁
N_SIMS = 20_000
SEED = 20230
PATH = Path(__file__).with_name("phi_table.npz")
_FLOOR = 1e-4  # no φ is impossible: a floor on every bin's density (heavy tails, AR(2))


def simulate(phi: float, total: int, n_sims: int, rng: np.random.Generator) -> np.ndarray:
    """r₁ of `n_sims` Gaussian AR(1) series of `total` values in two equal periods."""
    half = total // 2
    shocks = rng.standard_normal((n_sims, 2 * half))
    x = np.empty_like(shocks)
    x[:, 0] = shocks[:, 0]
    c = np.sqrt(1.0 - phi * phi)
    for j in range(1, 2 * half):
        x[:, j] = phi * x[:, j - 1] + c * shocks[:, j]
    a, b = x[:, :half], x[:, half:]
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    num = (a[:, 1:] * a[:, :-1]).sum(axis=1) + (b[:, 1:] * b[:, :-1]).sum(axis=1)
    den = (a * a).sum(axis=1) + (b * b).sum(axis=1)
    return num / den


def build(n_sims: int = N_SIMS, seed: int = SEED) -> np.ndarray:
    """The density table (len(SIZES) x len(PHI_GRID) x bins), deterministic for a seed."""
    rng = np.random.default_rng(seed)
    width = np.diff(R_EDGES)
    table = np.empty((len(SIZES), len(PHI_GRID), len(width)))
    for i, total in enumerate(SIZES):
        for k, phi in enumerate(PHI_GRID):
            r = simulate(float(phi), int(total), n_sims, rng)
            hist, _ = np.histogram(np.clip(r, -0.999, 0.999), bins=R_EDGES)
            # A little smoothing across neighbouring bins (simulation noise).
            smooth = np.convolve(hist, [0.25, 0.5, 0.25], mode="same")
            dens = smooth / smooth.sum() / width
            table[i, k] = np.maximum(dens, _FLOOR)
    return table


@lru_cache(maxsize=1)
def table() -> np.ndarray:
    """The shipped density table (see `build`)."""
    with np.load(PATH) as f:
        return f["density"]


def cells(r1: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Each product's flat cell of the table: the tabulated length nearest (on a log
    scale) to its number of errors, times the bins, plus its r₁ bin."""
    r1 = np.asarray(r1, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    size = np.abs(np.log(np.maximum(total, 1.0))[:, None] - np.log(SIZES)[None, :]).argmin(axis=1)
    bins = np.clip(np.searchsorted(R_EDGES, np.nan_to_num(r1), side="right") - 1, 0, 99)
    return size * (len(R_EDGES) - 1) + bins


@lru_cache(maxsize=1)
def _flat() -> np.ndarray:
    """The table as (sizes x bins) x PHI_GRID rows."""
    t = table()
    return np.ascontiguousarray(t.transpose(0, 2, 1).reshape(-1, t.shape[1]))


def likelihood(r1: np.ndarray, total: np.ndarray) -> np.ndarray:
    """(products x PHI_GRID): the density of each product's r₁ under each φ, for the
    tabulated length nearest (on a log scale) to its number of errors."""
    return cell_likelihood(cells(r1, total))


def cell_likelihood(cell: np.ndarray) -> np.ndarray:
    """(products x PHI_GRID): the density of each cell (`cells`) under each φ."""
    return _flat()[cell]


if __name__ == "__main__":
    np.savez_compressed(PATH, density=build().astype(np.float32))
    print(f"wrote {PATH}")

"""Windowing: the panel's feature arrays sliced into (input window, H targets) arrays.

Direct multi-output: one window of `lookback` days of features, plus what is known
in advance about the next `horizon` days, maps to all `horizon` targets at once. The
slicing is `numpy.lib.stride_tricks.sliding_window_view` (views, no copy) followed by one
fancy-indexing gather of the chosen (series, origin) pairs — no per-window Python loop.

An *origin* is the calendar index of a window's first target day: inputs are days
`[origin - lookback, origin)`, targets `[origin, origin + horizon)`. A window is kept
only when its series is listed the day before the origin and on every target day.

Targets are relative to the window's *level*: the mean standardised units of the
`LEVEL_DAYS` days before the origin. The network forecasts the change from the recent
level, so a product whose sales drift away from its long-run mean is not pulled back to
it; forecasts add the level back (`Windows.level`).

A budget (`max_windows`, `TrainConfig.max_train_windows` for training) bounds how many
windows are gathered, so memory follows the budget, not the catalogue: every series gets
an equal share (a series with fewer windows leaves its unused share to the others), and
a series with more keeps that many of its origins spread evenly from its first to its
latest (both kept), so every season and the most recent days stay represented.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from trainer.data.features import FeatureArrays

LEVEL_DAYS = 28


@dataclass(frozen=True)
class Windows:
    """Windowed arrays; row i of every array belongs to the same window."""

    x: np.ndarray  # (N, L, F) float32 input features
    known: np.ndarray  # (N, H, K + 1) float32 known-in-advance features (+ horizon step)
    y: np.ndarray  # (N, H) float32 standardised targets minus `level`
    level: np.ndarray  # (N,) float32 mean standardised units of the LEVEL_DAYS before origin
    product: np.ndarray  # (N,) int32 embedding index (1..P; 0 unknown)
    series: np.ndarray  # (N,) int32 panel row
    origin: np.ndarray  # (N,) int32 calendar index of the first target day
    synthetic: np.ndarray  # (N,) bool: from a synthetic (augmented) series
    weight: np.ndarray  # (N,) float32 sample weights (1.0 unless re-weighted)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def inputs(self, lookback: int | None = None) -> dict[str, np.ndarray]:
        """The model's inputs; `lookback` keeps only the last days of each window."""
        x = self.x if lookback is None else self.x[:, self.x.shape[1] - lookback :]
        return {"sequence": x, "known": self.known, "product": self.product}

    def subset(self, mask: np.ndarray) -> Windows:
        """The windows where `mask` is true."""
        return Windows(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})

    def with_weight(self, weight: np.ndarray) -> Windows:
        """The same windows with other sample weights."""
        return replace(self, weight=np.asarray(weight, dtype=np.float32))


def origins_every(start: int, stop: int, step: int, horizon: int) -> np.ndarray:
    """Origins o with start <= o and o + horizon <= stop, aligned so the last ends at stop."""
    last = stop - horizon
    if last < start:
        return np.empty(0, dtype=np.int64)
    return np.arange(last, start - 1, -step)[::-1]


def budget_mask(series: np.ndarray, origin: np.ndarray, max_windows: int) -> np.ndarray:
    """Which of the (series, origin) pairs to keep within `max_windows` (0: all).

    Each series gets the same quota `q`, the largest with `sum(min(count, q)) <=
    max_windows`; a series with more than `q` windows keeps `q` of them at evenly spaced
    ranks of its origins (its first and its latest among them).
    """
    n = len(series)
    keep = np.ones(n, dtype=bool)
    if not max_windows or n <= max_windows:
        return keep
    _, counts = np.unique(series, return_counts=True)
    ordered = np.sort(counts)
    # q: the largest quota whose total fits (water-filling over the sorted counts).
    lo, hi = 0, int(ordered[-1])
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(ordered, mid).sum()) <= max_windows:
            lo = mid
        else:
            hi = mid - 1
    quota = lo
    keep[:] = False
    order = np.lexsort((origin, series))  # by series, then origin
    start = 0
    for count in counts:
        rows = order[start : start + count]
        start += count
        if count <= quota:
            keep[rows] = True
        elif quota == 1:
            keep[rows[-1]] = True  # the latest
        elif quota > 1:
            keep[rows[np.round(np.linspace(0, count - 1, quota)).astype(np.int64)]] = True
    return keep


def window_pairs(
    arrays: FeatureArrays,
    origins: np.ndarray,
    lookback: int,
    horizon: int,
    *,
    series: np.ndarray | None = None,
    require_targets: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(series, origin) of the windows at `origins` for every series (or the rows in
    `series`) that qualify, series-major — what `make_windows` gathers, without gathering
    anything (a caller can choose among them first: `gather_windows`)."""
    n_days = arrays.seq.shape[1]
    rows = np.arange(arrays.seq.shape[0]) if series is None else np.asarray(series)
    origins = np.asarray(origins, dtype=np.int64)
    origins = np.unique(origins[(origins >= lookback) & (origins + horizon <= n_days)])
    # All (series, origin) pairs, then keep those listed before the origin and on all targets.
    s_idx = np.repeat(rows, origins.size)
    o_idx = np.tile(origins, rows.size)
    keep = arrays.listed[s_idx, o_idx - 1]
    if require_targets:
        listed_targets = sliding_window_view(arrays.listed, horizon, axis=1)  # (S, T-H+1, H)
        keep &= listed_targets[s_idx, o_idx].all(axis=1)
    return s_idx[keep], o_idx[keep]


def make_windows(
    arrays: FeatureArrays,
    origins: np.ndarray,
    lookback: int,
    horizon: int,
    *,
    series: np.ndarray | None = None,
    synthetic: np.ndarray | None = None,
    require_targets: bool = True,
    max_windows: int = 0,
) -> Windows:
    """Windows at `origins` for every series (or the rows in `series`) that qualify.

    `require_targets=False` (forecasting the unknown future) only asks that the series
    is listed the day before the origin. `max_windows` (0: all) keeps at most that many
    (`budget_mask`), chosen before anything is gathered.
    """
    s_idx, o_idx = window_pairs(
        arrays, origins, lookback, horizon, series=series, require_targets=require_targets
    )
    within = budget_mask(s_idx, o_idx, max_windows)
    return gather_windows(arrays, s_idx[within], o_idx[within], lookback, horizon, synthetic)


def gather_windows(
    arrays: FeatureArrays,
    s_idx: np.ndarray,
    o_idx: np.ndarray,
    lookback: int,
    horizon: int,
    synthetic: np.ndarray | None = None,
) -> Windows:
    """The windows of the (series, origin) pairs `s_idx`, `o_idx` (from `window_pairs`),
    gathered into arrays in that order."""
    n_series = arrays.seq.shape[0]
    # Windows over (days, features) blocks: the gather yields (N, L, F) in one copy.
    n_feat, n_known = arrays.seq.shape[2], arrays.known.shape[2]
    x_view = sliding_window_view(arrays.seq, (lookback, n_feat), axis=(1, 2))  # (S, T-L+1, 1, L, F)
    k_view = sliding_window_view(arrays.known, (horizon, n_known), axis=(1, 2))
    y_view = sliding_window_view(arrays.target, horizon, axis=1)  # (S, T-H+1, H)
    x = x_view[s_idx, o_idx - lookback, 0]
    known = k_view[s_idx, o_idx, 0]
    step = np.broadcast_to(
        (np.arange(1, horizon + 1, dtype=np.float32) / horizon)[None, :, None],
        (known.shape[0], horizon, 1),
    )
    known = np.concatenate([known, step], axis=-1).astype(np.float32)
    level = window_level(arrays, s_idx, o_idx)
    syn = np.zeros(n_series, dtype=bool) if synthetic is None else np.asarray(synthetic)
    return Windows(
        x=x,
        known=known,
        y=(y_view[s_idx, o_idx] - level[:, None]).astype(np.float32),
        level=level,
        product=arrays.product_index[s_idx].astype(np.int32),
        series=s_idx.astype(np.int32),
        origin=o_idx.astype(np.int32),
        synthetic=syn[s_idx],
        weight=np.ones(s_idx.size, dtype=np.float32),
    )


def window_level(arrays: FeatureArrays, series: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Mean standardised units over the listed days among the LEVEL_DAYS before each origin."""
    listed = arrays.listed.astype(np.float64)
    zero = np.zeros((listed.shape[0], 1))
    sums = np.concatenate([zero, np.cumsum(arrays.target * listed, axis=1)], axis=1)
    counts = np.concatenate([zero, np.cumsum(listed, axis=1)], axis=1)
    start = np.maximum(origin - LEVEL_DAYS, 0)
    total = sums[series, origin] - sums[series, start]
    n = counts[series, origin] - counts[series, start]
    return (total / np.maximum(n, 1.0)).astype(np.float32)

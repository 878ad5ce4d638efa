"""A frozen copy of the health check's computations before they were made faster
(tree 3dd0ac2), for tests that compare the new fast paths with them bit for bit. It
calls `stats`' helpers the old way (each computing its own period means, sds and lag-1
r; medians by np.nanmedian)."""

from __future__ import annotations

import warnings

import numpy as np

from forecastguard.health import stats


def lag_counts_rows_before(present: np.ndarray, m: int, contiguous: np.ndarray) -> np.ndarray:
    """`stats._lag_counts_rows` as it was: pair by pair, one lag at a time."""
    rows, width = present.shape
    p = present.astype(np.float64)
    out = np.zeros((rows, 3, width))
    for k in range(width):
        a, b = p[:, : width - k], p[:, k:]
        both = a * b
        out[:, 0, k] = both[:, : max(m - k, 0)].sum(axis=1)
        out[:, 1, k] = both[:, m:].sum(axis=1)
        if k:
            lo = max(m - k, 0)
            out[:, 2, k] = both[:, lo : min(m, width - k)].sum(axis=1)
    out[~contiguous, 2, :] = 0.0
    return out


def _lag_patterns_before(
    present: np.ndarray, m: int, contiguous: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    key = np.concatenate([present, contiguous[:, None]], axis=1)
    packed = np.packbits(key, axis=1)
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    return lag_counts_rows_before(present[first], m, contiguous[first]), inverse.ravel()


def drift_tests_before(
    ref: np.ndarray,
    win: np.ndarray,
    *,
    contiguous: np.ndarray,
    weekday: np.ndarray | None = None,
    min_samples: int = 7,
) -> stats.DriftTests:
    """`stats.drift_tests` as it was at 3dd0ac2 (verbatim but for this line)."""
    ref = np.asarray(ref, dtype=np.float64)
    win = np.asarray(win, dtype=np.float64)
    if ref.ndim != 2 or win.ndim != 2 or ref.shape[0] != win.shape[0]:
        raise ValueError(
            f"ref and win must be 2-D with one row a group, got {ref.shape} and {win.shape}"
        )
    if min_samples < 2:
        raise ValueError(f"min_samples must be >= 2, got {min_samples}")
    groups, m = ref.shape
    n = win.shape[1]
    contiguous = np.asarray(contiguous, dtype=bool)
    if contiguous.shape != (groups,):
        raise ValueError(f"contiguous must have one value a group ({groups})")
    if weekday is not None and len(weekday) != m + n:
        raise ValueError(f"weekday must have one value a column ({m + n}), got {len(weekday)}")
    if m < 1 or n < 1:
        raise ValueError("ref and win need at least one column each")

    n_ref, mean_ref, sd_ref = stats._nan_mean_sd(ref)
    n_win, mean_win, sd_win = stats._nan_mean_sd(win)
    with np.errstate(invalid="ignore", divide="ignore"):
        bias_shift = mean_win - mean_ref
        bias_shift_sd = np.where(sd_ref > 0, bias_shift / sd_ref, np.nan)
        spread_ratio = np.where(sd_ref > 0, sd_win / sd_ref, np.nan)
    tested = (n_ref >= min_samples) & (n_win >= min_samples)

    raw = np.concatenate([ref, win], axis=1)
    x = raw.copy()
    present = ~np.isnan(x)
    total = n_ref + n_win
    spent = np.zeros(groups)
    if weekday is not None:
        # Weekday means (pooled over both periods) removed: 6 more parameters.
        rows = np.flatnonzero(contiguous & (total >= stats.MIN_WEEKDAY_ADJUST))
        if len(rows):
            wd = np.asarray(weekday, dtype=np.int64) % 7
            ok = present[rows]
            filled = np.where(ok, x[rows], 0.0)
            # Row-wise sums (not a matrix product): a row's result never depends on the
            # other rows (the check's per-product phase is partition-invariant).
            sums = np.stack([filled[:, wd == d].sum(axis=1) for d in range(7)], axis=1)
            counts = np.stack([ok[:, wd == d].sum(axis=1) for d in range(7)], axis=1).astype(
                np.float64
            )
            overall = sums.sum(axis=1) / counts.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                wmean = np.where(counts > 0, sums / counts, 0.0) - overall[:, None]
            x[rows] = x[rows] - wmean[:, wd]
            spent[rows] = 6.0

    patterns = _lag_patterns_before(present, m, contiguous)
    counts = patterns[0][patterns[1]]
    from forecastguard.health import slow_table
    from forecastguard.health.phi_table import PHI_GRID

    r1, n_total = stats.lag1_r(x, m)
    grid = np.append(PHI_GRID, slow_table.PHI_SLOW)
    k = len(PHI_GRID)
    all_sums = stats._pattern_sums(patterns, grid, m + n)
    sums = tuple(s[:, :k] for s in all_sums)
    level_diff, level_se, level_dof = stats._mean_change_grid(x, m, PHI_GRID, patterns, spent, sums)
    level_diff[~tested] = np.nan
    _, _, level_sd_ref = stats._nan_mean_sd(x[:, :m])
    _, _, level_sd_win = stats._nan_mean_sd(x[:, m:])
    placebo = stats.placebo_ratio(x[:, :m], n)
    config = slow_table.configuration(n, m)
    enough = n_total >= slow_table.MIN_PRESENT * slow_table.configuration_days(max(config, 0))
    placebo_config = np.where((config >= 0) & enough & np.isfinite(placebo), config, -1)

    # Prewhitened errors around the common mean (one lattice for discrete errors), with
    # the cautious coefficient (over-whitening leaves negative autocorrelation: safe).
    link = present[:, 1:] & present[:, :-1]
    link[:, m - 1] &= contiguous

    def prewhiten(series: np.ndarray) -> np.ndarray:
        phi_w = stats.ar1_coefficient(series, m, stats.WHITEN_MARGIN)
        _, common, _ = stats._nan_mean_sd(series)
        c = np.where(present, series - common[:, None], 0.0)
        out = c.copy()
        out[:, 1:] = np.where(link, c[:, 1:] - phi_w[:, None] * c[:, :-1], c[:, 1:])
        return np.where(present, out, np.nan)

    # Scale: Brown-Forsythe on the prewhitened raw errors (a weekday adjustment would
    # carry the window's spread into the reference), its own AR(1) correction.
    v = prewhiten(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        med_r = np.nanmedian(v[:, :m], axis=1)
        med_w = np.nanmedian(v[:, m:], axis=1)
    dev = np.abs(np.concatenate([v[:, :m] - med_r[:, None], v[:, m:] - med_w[:, None]], axis=1))
    phi_dev = stats.ar1_coefficient(dev, m, stats.DEV_MARGIN)
    scale_diff, scale_se, scale_dof = stats._mean_change(
        dev, m, phi_dev[:, None], counts, np.zeros(groups)
    )
    _, scale_ref, _ = stats._nan_mean_sd(dev[:, :m])
    scale_diff[~tested] = np.nan

    # Shape: KS of the prewhitened weekday-adjusted errors.
    u = prewhiten(x)
    rho = stats.ar1_coefficient(u, m)
    d_stat, w1 = stats._dense_ks(u, m)
    from scipy.special import kolmogorov

    shrink = (1.0 - rho) / (1.0 + rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        ea, eb = n_win * shrink, n_ref * shrink
        p_shape = kolmogorov(d_stat * np.sqrt(ea * eb / (ea + eb)))
    p_shape[~tested] = np.nan
    _, _, sd_u = stats._nan_mean_sd(u[:, :m])
    with np.errstate(invalid="ignore", divide="ignore"):
        shape_effect = np.where(sd_u > 0, w1 / sd_u, np.nan)
    return stats.DriftTests(
        n_ref=n_ref,
        n_win=n_win,
        r1=r1,
        n_total=n_total.astype(np.float64),
        level_diff=level_diff,
        level_se=level_se,
        level_dof=level_dof,
        scale_diff=scale_diff,
        scale_se=scale_se[:, 0],
        scale_dof=scale_dof[:, 0],
        scale_ref=scale_ref,
        p_shape=p_shape,
        bias_shift=bias_shift,
        bias_shift_sd=bias_shift_sd,
        sd_ref=np.where(sd_ref > 0, sd_ref, np.sqrt(stats.CONSTANT_VARIANCE)),
        spread_ratio=spread_ratio,
        shape_effect=shape_effect,
        level_sd_ref=level_sd_ref,
        level_sd_win=level_sd_win,
        level_spent=spent,
        sums_rr=sums[0],
        sums_ww=sums[1],
        sums_rw=sums[2],
        slow_rr=all_sums[0][:, k],
        slow_ww=all_sums[1][:, k],
        slow_rw=all_sums[2][:, k],
        placebo=placebo,
        placebo_config=placebo_config.astype(np.float64),
    )

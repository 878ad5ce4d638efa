"""The trainer's quantiles of a kept backtest run, re-derived by an interval method.

`python -m experiments.recalibrate --raw RUN --dumps DIR --out NEW [options]` reads a run
made with `--keep-forecasts --dump-intervals DIR` and writes a copy of its raw results
(`NEW/raw/`, for `python -m experiments --merge NEW ...`) in which the trainer's models
(`trainer`, `trainer_lightgbm`, `trainer_lightgbm_heldout`, `blend`, `debiased_lstm`)
carry the quantiles of `trainer.models.intervals.fit_intervals` with the given options,
fitted on the very validation forecasts the run's trainer calibrated on and applied to
its served forecasts. The points, the other models and every other field are the run's
own. With the options of the run's trainer the run's quantiles come back (`--check`).

Options: `--level-power` (γ of the level factor; 0: a fixed scale), `--no-zero-mass`,
`--with-test` (calibrate on the validation and the trainer's test-split forecasts, the
horizon just before the cutoff), `--tails` (the LightGBM kinds' quantile tails, as the
trainer serves them since issue 27's fourth pass; without it, the residual quantiles). `--variants` prints, instead, the backtest's interval
fields (`coverage_80`, `coverage_80_p10`, `wspl`) of the served forecaster for each of
`VARIANTS` at every dumped cutoff, beside the run's quantile-LightGBM reference: the
offline method search of issue 27.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.backtest import quantile_column
from experiments.models.base import QUANTILE_LEVELS
from trainer.models.intervals import blend_median, whole_units

# backtest model -> (the dump's served kind, the calibration's kind); "trainer": the
# kind the trainer chose at that cutoff
OUTER = -1.0  # `tail_weight`: not an average but the wider of the two quantiles
VARIANTS: dict[str, dict[str, Any]] = {
    "pooled shape (the first version)": {"level_power": 0.0, "zero_mass": False},
    "+ level factor γ 0.5": {"level_power": 0.5, "zero_mass": False},
    "+ level factor γ 1": {"level_power": 1.0, "zero_mass": False},
    "+ zero mass": {"level_power": 0.0, "zero_mass": True},
    "+ level factor γ 1 + zero mass": {"level_power": 1.0, "zero_mass": True},
    "+ level factor γ 1 + zero mass, with test": {
        "level_power": 1.0,
        "zero_mass": True,
        "with_test": True,
    },
    # issue 27's third pass: ways to bring the mean coverage down to 0.80
    "zero mass only where p0 > 1.5·α": {"zero_threshold": 1.5},
    "zero mass only where p0 > 2·α": {"zero_threshold": 2.0},
    "P10 with γ 0.75 (P50, P90 γ 1)": {"lower_power": 0.75},
    "P10 with γ 1.5 (P50, P90 γ 1)": {"lower_power": 1.5},
    "P10 moved halfway to a 10 % miss of the whole rule": {"lower_rule": 0.5},
    "P10 at a 10 % miss of the whole rule": {"lower_rule": 1.0},
    # issue 27's fourth pass: the LightGBM kinds' quantile tails (dumps with tail columns)
    "CQR tails per level (the trainer's)": {"tails": True},
    "CQR tails, symmetric (Romano et al.)": {"tails": True, "tail_mode": "symmetric"},
    "CQR P10/P90 only (P50 from the residuals)": {"tails": True, "tail_levels": (0.1, 0.9)},
    "quantile tails, not conformalised": {"tails": True, "tail_mode": "raw"},
    "CQR tails per level, held-out boosters served (not refitted)": {
        "tails": True,
        "heldout_tails": True,
    },
    "CQR tails for LightGBM only (the blend: residuals)": {"tails": ("lightgbm",)},
    "CQR tails, the blend's not moved by its difference from LightGBM": {
        "tails": True,
        "unmoved_blend_tails": True,
    },
    "CQR P10/P90 only, the blend's not moved": {
        "tails": True,
        "tail_levels": (0.1, 0.9),
        "unmoved_blend_tails": True,
    },
    "½ CQR tail + ½ residual quantile (P10, P90)": {
        "tails": True,
        "tail_weight": 0.5,
        "tail_levels": (0.1, 0.9),
    },
    "the wider of the CQR tail and the residual quantile, the blend's not moved": {
        "tails": True,
        "tail_weight": OUTER,
        "tail_levels": (0.1, 0.9),
        "unmoved_blend_tails": True,
    },
    "½ CQR tail + ½ residual quantile (P10, P90), the blend's not moved": {
        "tails": True,
        "tail_weight": 0.5,
        "tail_levels": (0.1, 0.9),
        "unmoved_blend_tails": True,
    },
}
# issue 27's fifth pass: a per-product tail (the trainer's tails, the blend's unmoved)
_T3 = {"tails": True, "unmoved_blend_tails": True}
_T2 = _T3 | {"tail_levels": (0.1, 0.9)}
VARIANTS |= {
    "CQR P10/P50/P90 (fourth pass, for comparison)": _T3,
    "normalised CQR P10/P50/P90 (score / g·s_p)": _T3 | {"tail_scale": "product"},
    "normalised CQR P10/P90 (score / g·s_p)": _T2 | {"tail_scale": "product"},
    "normalised CQR P10/P50/P90 (score / tails' width)": _T3 | {"tail_scale": "width"},
    "Mondrian CQR per product, k 28": _T3 | {"tail_shrinkage": 28.0},
    "Mondrian CQR per product, k 56": _T3 | {"tail_shrinkage": 56.0},
    "normalised + Mondrian per product, k 28": _T3
    | {"tail_scale": "product", "tail_shrinkage": 28.0},
    "normalised + Mondrian per product, k 56": _T3
    | {"tail_scale": "product", "tail_shrinkage": 56.0},
    "tail or residual quantile per level (validation pinball)": _T3 | {"tail_choice": "level"},
    "tail or residual quantile per product (validation pinball)": _T3 | {"tail_choice": "product"},
    "normalised CQR, tail or residual per level": _T3
    | {"tail_scale": "product", "tail_choice": "level"},
    "normalised CQR, tail or residual per product": _T3
    | {"tail_scale": "product", "tail_choice": "product"},
    "normalised + Mondrian k 28, tail or residual per level": _T3
    | {"tail_scale": "product", "tail_shrinkage": 28.0, "tail_choice": "level"},
    # P50: the P50 tail, the residual quantile (P10/P90 variants above), or their average
    "CQR, P50 ½ tail + ½ residual quantile": _T3 | {"tail_weight": {0.5: 0.5}},
    "normalised CQR, P50 ½ tail + ½ residual quantile": _T3
    | {"tail_scale": "product", "tail_weight": {0.5: 0.5}},
    "CQR, P50 the point": _T3 | {"median_point": 1.0},
    "CQR, P50 ½ tail + ½ point": _T3 | {"median_point": 0.5},
    "CQR P10/P90, P50 ½ residual quantile + ½ point": _T2 | {"median_point": 0.5},
    "CQR, P50's weight of the point chosen on validation (0, ½, 1)": _T3
    | {"median_point_grid": (0.0, 0.5, 1.0)},
    "CQR, P50's weight of the point chosen on validation (0, ¼, ½, ¾, 1)": _T3
    | {"median_point_grid": (0.0, 0.25, 0.5, 0.75, 1.0)},
    "CQR, the blend's P50 ½ tail + ½ its point": _T3
    | {"per_kind": {"blend": {"median_point": 0.5}}},
    "CQR, P10 tail < 0.01 served as 0, the blend's P50 ½ tail + ½ its point": _T3
    | {"tail_floor": 0.01, "per_kind": {"blend": {"median_point": 0.5}}},
    "CQR, the blend's P50 tail ½ LightGBM's + ½ its point (calibrated)": _T3
    | {"blend_median_point": 0.5},
    "CQR, P10 tail < 0.01 served as 0, the blend's P50 tail ½ + ½ its point (calibrated)": _T3
    | {"tail_floor": 0.01, "blend_median_point": 0.5},
    # counts: a P10 below half a unit (one unit) served as 0
    "CQR, P10 < 0.5 served as 0": _T3 | {"lower_snap": 0.5},
    "CQR, P10 < 1 served as 0": _T3 | {"lower_snap": 1.0},
    "normalised CQR, P10 < 0.5 served as 0": _T3 | {"tail_scale": "product", "lower_snap": 0.5},
    "normalised CQR, P10 < 1 served as 0": _T3 | {"tail_scale": "product", "lower_snap": 1.0},
    "CQR, P10 < 0.1 served as 0": _T3 | {"lower_snap": 0.1},
    "CQR, P10 < 0.2 served as 0": _T3 | {"lower_snap": 0.2},
    "CQR, P10 < 0.3 served as 0": _T3 | {"lower_snap": 0.3},
    "CQR, P10 < 0.05 served as 0": _T3 | {"lower_snap": 0.05},
    "CQR, P10 < 0.01 served as 0": _T3 | {"lower_snap": 0.01},
    "CQR, P10 < 0.001 served as 0": _T3 | {"lower_snap": 0.001},
    # the trainer's `tail_floor` (the tails only: the LSTM keeps its P10)
    "CQR, P10 tail < 0.01 served as 0 (tail_floor)": _T3 | {"tail_floor": 0.01},
    "CQR, P10 tail < 0.05 served as 0 (tail_floor)": _T3 | {"tail_floor": 0.05},
}
VARIANTS[
    "the trainer's default since the fifth pass (P10 tail < 0.01 served as 0, the blend's P50 tail ½ + ½ its point)"
] = _T3 | {
    "tail_floor": 0.01,
    "blend_median_point": 0.5,
}
# after the sixth pass's recipe sweep: counts have whole-number quantiles (`_Rounded`)
_SERVED = _T3 | {"tail_floor": 0.01, "blend_median_point": 0.5}
VARIANTS |= {
    "served, every quantile rounded to whole units": _SERVED | {"round_levels": (0.1, 0.5, 0.9)},
    "served, P50 and P90 rounded to whole units": _SERVED | {"round_levels": (0.5, 0.9)},
    # the eighth pass (fixed before its cutoffs were run): only the median in whole
    # units. A P50 inside the interval moves no day in or out of it, so coverage stays;
    # rounded P10/P90 take in a whole unit more and cover 0.90.
    "served, P50 rounded to whole units": _SERVED | {"round_levels": (0.5,)},
    # the same through the trainer's own option (a check that it reproduces the above)
    "served, P50 rounded to whole units (the trainer's whole_median)": _SERVED
    | {"whole_median": True},
    "served without the floor, every quantile rounded to whole units": _T3
    | {"blend_median_point": 0.5, "round_levels": (0.1, 0.5, 0.9)},
    "CQR P10/P90, P50 from the residuals, rounded to whole units": _T2
    | {"round_levels": (0.1, 0.5, 0.9)},
}
# the seventh pass: quantile averaging of the tails and the residual quantiles around
# the point (which carries the LSTM's information), the weights chosen on validation
VARIANTS |= {
    "½ CQR tail + ½ residual quantile (P10, P90), floor, the blend's P50 ½ + ½ point": _SERVED
    | {"tail_weight": {0.1: 0.5, 0.9: 0.5}},
    "CQR tail + residual quantile, weights chosen on validation (P10, P50, P90)": _T3
    | {"tail_floor": 0.01, "tail_weight": "validation"},
    "CQR tail + residual quantile, weights on validation, the blend's P50 ½ + ½ point": _SERVED
    | {"tail_weight": "validation"},
    # the best of the fourteen cutoffs with the point model's recipe for the tails, with
    # the served floor (coverage: the floor takes in the days without a sale)
    "CQR, P50 ½ tail + ½ residual quantile, floor": _T3
    | {"tail_weight": {0.5: 0.5}, "tail_floor": 0.01},
    "normalised CQR, P50 ½ tail + ½ residual quantile, floor": _T3
    | {"tail_scale": "product", "tail_weight": {0.5: 0.5}, "tail_floor": 0.01},
    "normalised CQR, P50 ½ tail + ½ residual quantile, floor, the blend's P50 ½ + ½ point": _T3
    | {
        "tail_scale": "product",
        "tail_weight": {0.5: 0.5},
        "tail_floor": 0.01,
        "blend_median_point": 0.5,
    },
}
for _options in VARIANTS.values():  # the variants name their floor (the trainer's: 0.01)
    if _options.get("tails"):
        _options.setdefault("tail_floor", 0.0)
    # and their median's rounding (the trainer's whole_median, served since the eighth pass)
    _options.setdefault("whole_median", False)
# the options above that are not `fit_intervals`' but transforms of its calibration here
EXTRA_OPTIONS = (
    "zero_threshold",
    "lower_power",
    "lower_rule",
    "tail_mode",
    "tail_levels",
    "tail_weight",
    "lower_snap",
    "median_point",
    "round_levels",
)
TAIL_OPTIONS = ("tails",)  # which kinds get the quantile tails (True: every kind with them)


class _Combined:
    """Quantiles below the median from one calibration, the others from another."""

    def __init__(self, lower: Any, upper: Any) -> None:
        self.lower, self.upper = lower, upper

    def apply(self, frame: pd.DataFrame, column: str = "predicted") -> pd.DataFrame:
        """`IntervalCalibration.apply` of both, merged and kept from crossing."""
        lo = self.lower.apply(frame, column)
        out = self.upper.apply(frame, column)
        cols = list(self.upper.columns)
        below = [c for c, a in zip(cols, self.upper.levels, strict=True) if a < 0.5]
        values = out[cols].to_numpy(dtype=float)
        for c in below:
            values[:, cols.index(c)] = lo[c].to_numpy(dtype=float)
        values = np.maximum.accumulate(values, axis=1)
        return out.assign(**{c: values[:, i] for i, c in enumerate(cols)})


class _Averaged:
    """The quantile tails' levels as `weight` × the CQR tail + (1 − weight) × the residual
    quantile (quantile averaging of the two methods); the other levels the residuals'.
    `weight`: one for every tail level, or level -> weight (a level not listed: 1)."""

    def __init__(self, tails: Any, residual: Any, weight: float | dict[float, float]) -> None:
        self.tails, self.residual, self.weight = tails, residual, weight
        self.levels, self.columns = residual.levels, residual.columns

    def apply(self, frame: pd.DataFrame, column: str = "predicted") -> pd.DataFrame:
        """Both calibrations applied, the tail levels averaged, kept from crossing."""
        from trainer.models.intervals import column_name

        t = self.tails.apply(frame, column)
        out = self.residual.apply(frame, column)
        cols = list(self.columns)
        values = out[cols].to_numpy(dtype=float)
        for a in self.tails.tail_levels:
            i = cols.index(column_name(a))
            tail = t[cols[i]].to_numpy()
            w = self.weight.get(a, 1.0) if isinstance(self.weight, dict) else self.weight
            if w == OUTER:  # the wider of the two
                values[:, i] = (
                    np.minimum(tail, values[:, i]) if a < 0.5 else np.maximum(tail, values[:, i])
                )
            else:
                values[:, i] = w * tail + (1 - w) * values[:, i]
        values = np.maximum.accumulate(values, axis=1)
        return out.assign(**{c: values[:, i] for i, c in enumerate(cols)})


class _Snapped:
    """The quantiles below the median of `cal` set to 0 where they fall below `floor`
    units: sales are counts, so a P10 of 0.3 misses every day without a sale as a P10 of
    1 would, and costs at most `α`·0.3 of pinball loss against 0 on other days."""

    def __init__(self, cal: Any, floor: float) -> None:
        self.cal, self.floor = cal, floor
        self.levels, self.columns = cal.levels, cal.columns
        self.tail_levels = getattr(cal, "tail_levels", ())

    def apply(self, frame: pd.DataFrame, column: str = "predicted") -> pd.DataFrame:
        """`cal.apply`, the small lower quantiles snapped to 0."""
        out = self.cal.apply(frame, column)
        for a, c in zip(self.levels, self.columns, strict=True):
            if a < 0.5:
                v = out[c].to_numpy(dtype=float)
                out[c] = np.where(v < self.floor, 0.0, v)
        return out


class _Moved:
    """A calibration whose applied quantiles a subclass moves (`move`), kept from crossing."""

    def __init__(self, cal: Any) -> None:
        self.cal = cal
        self.levels, self.columns = cal.levels, cal.columns
        self.tail_levels = getattr(cal, "tail_levels", ())

    def move(self, values: np.ndarray, point: np.ndarray) -> np.ndarray:
        """The (rows, levels) quantiles moved; `point` the rows' point forecasts."""
        raise NotImplementedError

    def apply(self, frame: pd.DataFrame, column: str = "predicted") -> pd.DataFrame:
        """`cal.apply`, the quantiles moved and kept from crossing."""
        out = self.cal.apply(frame, column)
        cols = list(self.columns)
        point = np.clip(frame[column].to_numpy(dtype=float), 0.0, None)
        values = self.move(out[cols].to_numpy(dtype=float), point)
        values = np.maximum.accumulate(values, axis=1)
        return out.assign(**{c: values[:, j] for j, c in enumerate(cols)})


class _Rounded(_Moved):
    """`cal`'s quantiles at `levels` rounded half up to whole units (`whole_units`, the
    trainer's rule). Sales are counts, and a quantile commutes with rounding (the
    α-quantile of round(X) is round of X's), so a quantile of counts is a whole number;
    between two whole numbers the pinball loss of a count is linear, so a quantile inside
    the segment scores no better than both ends."""

    def __init__(self, cal: Any, levels: tuple[float, ...]) -> None:
        super().__init__(cal)
        self.round_levels = levels

    def move(self, values: np.ndarray, point: np.ndarray) -> np.ndarray:
        """The chosen levels rounded half up."""
        for i, a in enumerate(self.levels):
            if a in self.round_levels:
                values[:, i] = whole_units(values[:, i])
        return values


class _PointMedian(_Moved):
    """P50 as `weight` × the point forecast + (1 − weight) × `cal`'s P50 (kept from
    crossing the other quantiles)."""

    def __init__(self, cal: Any, weight: float) -> None:
        super().__init__(cal)
        self.weight = weight

    def move(self, values: np.ndarray, point: np.ndarray) -> np.ndarray:
        """P50 moved toward the point."""
        i = list(self.columns).index("p50")
        values[:, i] = self.weight * point + (1 - self.weight) * values[:, i]
        return values


def _rule_scores(cal: Any, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each calibration row's standardised residual `e / (g·s)`, chance of no sale and
    horizon band under calibration `cal` (the quantities `quantile_values` uses)."""
    from trainer.models.intervals import level_factor, zero_probability

    products = frame["product_id"].astype(str).to_numpy()
    point = frame["predicted"].to_numpy(dtype=float)
    scale = np.array([cal.scales.get(p, cal.default_scale) for p in products])
    if cal.level_power:
        mean = np.array([cal.mean_points.get(p, np.nan) for p in products])
        scale = scale * np.nan_to_num(level_factor(point, mean, cal.level_power), nan=1.0)
    z = (frame["actual"].to_numpy(dtype=float) - point) / np.where(scale > 1e-9, scale, np.nan)
    p0 = np.zeros_like(z)
    if cal.zero_model:
        share = np.array([cal.zero_shares.get(p, np.nan) for p in products])
        mean0 = np.array([cal.mean_points.get(p, 0.0) for p in products])
        p0 = zero_probability(cal.zero_model, np.nan_to_num(share), point, mean0)
        p0 = np.where(np.isnan(share), 0.0, p0)
    return z, p0, cal.band(frame["horizon_step"].to_numpy())


def calibrate(frame: pd.DataFrame, naive: dict[str, float], **options: Any) -> Any:
    """`fit_intervals(frame, naive, **options)`, then the experiment-side variants:

    - `zero_threshold` k: the zero mass sets a quantile at level α to 0 only where the
      chance of no sale exceeds k·α (exact for one level below the median, the
      backtest's P10: the logistic's intercept moves by logit(α) − logit(k·α));
    - `lower_power`: the quantiles below the median from a calibration with this γ;
    - `lower_rule` f: each band's quantiles below the median moved the share f of the
      way to where the whole rule (clipping at 0, zero mass) misses level α of the
      calibration rows (without it the rule misses fewer: a lower quantile at 0
      cannot be missed).
    """
    import dataclasses

    from trainer.models.intervals import column_name, fit_intervals

    extra = {k: options.pop(k) for k in EXTRA_OPTIONS if k in options}
    if "median_point" in extra:
        w = float(extra.pop("median_point"))
        return _PointMedian(calibrate(frame, naive, **options, **extra), w)
    if "round_levels" in extra:
        levels = tuple(float(a) for a in extra.pop("round_levels"))
        return _Rounded(calibrate(frame, naive, **options, **extra), levels)
    if "lower_snap" in extra:
        floor = float(extra.pop("lower_snap"))
        return _Snapped(calibrate(frame, naive, **options, **extra), floor)
    if "tail_weight" in extra and options.get("tails"):
        w = extra.pop("tail_weight")
        tails = calibrate(frame, naive, **options, **extra)
        residual = calibrate(frame, naive, **(options | {"tails": False}))
        if not tails.tail_levels:
            return residual
        if isinstance(w, str):  # "validation": chosen per level on the calibration rows
            w = _validation_weights(tails, residual, frame, naive, WEIGHT_GRID)
        return _Averaged(tails, residual, dict(w) if isinstance(w, dict) else float(w))
    if not options.pop("tails", False):  # the residual quantiles alone
        frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith("tail_")])
    if "tail_levels" in extra:  # only these levels from the tails
        keep = {f"tail_{column_name(a)}" for a in extra["tail_levels"]}
        frame = frame.drop(
            columns=[c for c in frame.columns if str(c).startswith("tail_") and c not in keep]
        )
    cal = fit_intervals(frame, naive, **options)
    mode = extra.get("tail_mode", "level")
    if len(cal.tail_levels) == 3 and mode == "symmetric":  # the interval's tails alone
        cal = dataclasses.replace(
            cal,
            tail_levels=cal.tail_levels[::2],
            tail_shifts=tuple(t[::2] for t in cal.tail_shifts),
        )
    if cal.tail_levels and mode != "level":
        cal = dataclasses.replace(cal, tail_shifts=_tail_shifts(cal, frame, mode))
    below = [a for a in cal.levels if a < 0.5]
    k = float(extra.get("zero_threshold", 1.0))
    if k != 1.0 and cal.zero_model and below:
        a = below[0]
        shift = math.log(a / (1 - a)) - math.log(k * a / (1 - k * a))
        cal = dataclasses.replace(cal, zero_model=(cal.zero_model[0] + shift, *cal.zero_model[1:]))
    f = float(extra.get("lower_rule", 0.0))
    if f:
        data = frame[np.isfinite(frame["actual"].to_numpy(dtype=float))]
        z, p0, band = _rule_scores(cal, data)
        quantiles = [list(q) for q in cal.quantiles]
        for b, q in enumerate(quantiles):
            for i, a in enumerate(cal.levels):
                mine = (band == b) & np.isfinite(z)
                free = mine & ~(p0 > a)  # rows whose quantile can be missed
                if a >= 0.5 or not free.any():
                    continue
                level = min(0.49, a * mine.sum() / free.sum())
                q[i] += f * (float(np.quantile(z[free], level)) - q[i])
        cal = dataclasses.replace(cal, quantiles=tuple(tuple(q) for q in quantiles))
    if "lower_power" in extra:
        lower = calibrate(frame, naive, **(options | {"level_power": extra["lower_power"]}))
        return _Combined(lower, cal)
    return cal


WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # `tail_weight` "validation": the weights tried


def _validation_weights(
    tails: Any, residual: Any, frame: pd.DataFrame, naive: dict[str, float], grid: tuple
) -> dict[float, float]:
    """Each tail level's weight of the tail in `_Averaged` (quantile averaging of the
    quantile boosters and the residual quantiles around the point): the one of `grid`
    with the lowest pinball loss on the calibration rows `frame`, each row's loss scaled
    by its product's seasonal-naive error `naive` (as WSPL scales it)."""
    from trainer.models.intervals import column_name, pinball_loss

    data = frame[np.isfinite(frame["actual"].to_numpy(dtype=float))]
    actual = data["actual"].to_numpy(dtype=float)
    scale = data["product_id"].astype(str).map(naive).to_numpy(dtype=float)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, np.nan)
    t, r = tails.apply(data, "predicted"), residual.apply(data, "predicted")
    out = {}
    for a in tails.tail_levels:
        c = column_name(a)
        loss = [
            np.nanmean(pinball_loss(actual, w * t[c] + (1 - w) * r[c], a) / scale) for w in grid
        ]
        out[float(a)] = float(grid[int(np.argmin(loss))])
    return out


def _tail_shifts(cal: Any, frame: pd.DataFrame, mode: str) -> tuple[tuple[float, ...], ...]:
    """Each band's tail shifts under `mode`: "raw" none (the boosters' quantiles as they
    are); "symmetric" CQR's joint score (Romano et al. 2019): the split-conformal
    quantile `Q` at the interval's level of `max(lo - y, y - hi)`, lower tail moved by
    `-Q`, upper by `+Q`."""
    from trainer.models.intervals import conformal_quantile, tail_column

    if mode == "raw":
        return tuple(tuple(0.0 for _ in cal.tail_levels) for _ in cal.tail_shifts)
    if mode != "symmetric" or len(cal.tail_levels) != 2:
        raise ValueError(f"unknown tail mode {mode!r} (or not two tail levels)")
    lo, hi = cal.tail_levels
    data = frame[np.isfinite(frame["actual"].to_numpy(dtype=float))]
    y = data["actual"].to_numpy(dtype=float)
    score = np.maximum(data[tail_column(lo)].to_numpy() - y, y - data[tail_column(hi)].to_numpy())
    band = cal.band(data["horizon_step"].to_numpy())
    out = []
    for b in range(len(cal.tail_shifts)):
        q = conformal_quantile(score[band == b], hi - lo)
        out.append((-q, q))
    return tuple(out)


MODELS: dict[str, tuple[str, str]] = {
    "debiased_lstm": ("lstm", "lstm"),
    "trainer_lightgbm": ("lightgbm", "lightgbm"),
    "trainer_lightgbm_heldout": ("lightgbm_heldout", "lightgbm"),
    "blend": ("blend", "blend"),
}


def load_dump(path: Path) -> dict[str, Any]:
    """One cutoff's interval inputs (`experiments.models.lstm.dump_interval_inputs`)."""
    with path.open("rb") as fh:
        data = pickle.load(fh)  # a dump this harness wrote (trusted input)
    missing = {"cutoff", "chosen", "calibration", "served", "naive"} - set(data)
    if missing:
        raise ValueError(f"{path}: not an interval dump (no {sorted(missing)})")
    return data


def calibration_frame(
    dump: dict[str, Any], kind: str, with_test: bool, split: str = "calibration"
) -> pd.DataFrame:
    """The forecasts kind `kind` is calibrated on (plus the test split's, `with_test`)."""
    frame = dump[split][kind]
    if with_test:
        if "test" not in dump:
            raise ValueError(f"the dump of {dump['cutoff']} has no test-split forecasts")
        frame = pd.concat([frame, dump["test"][kind]], ignore_index=True)
    return frame


def unmoved_tails(dump: dict[str, Any], frame: pd.DataFrame, split: str, with_test: bool) -> Any:
    """A blend's forecast `frame` with LightGBM's tails as they are (not moved by the
    blend's difference from LightGBM's point): the same rows as LightGBM's frame."""
    gbm = calibration_frame(dump, "lightgbm", with_test, split)
    cols = [c for c in gbm.columns if str(c).startswith("tail_")]
    if len(gbm) != len(frame):
        raise ValueError(f"{dump['cutoff']}: the blend's and LightGBM's rows differ")
    return frame.assign(**{c: gbm[c].to_numpy() for c in cols})


def served_quantiles(
    dump: dict[str, Any], *, with_test: bool = False, **options: Any
) -> dict[str, pd.DataFrame]:
    """backtest model -> its served forecasts with the re-derived quantile columns
    (product_id, target_date, predicted_units, p10, p50, p90)."""
    tails = options.pop("tails", False)
    heldout = bool(options.pop("heldout_tails", False))
    unmoved = bool(options.pop("unmoved_blend_tails", False))
    per_kind = options.pop("per_kind", {})  # kind -> options of its own
    mix = float(options.pop("blend_median_point", 0.0))
    frames = {k: calibration_frame(dump, k, with_test) for k in ("lstm", "lightgbm", "blend")}
    if unmoved:
        frames["blend"] = unmoved_tails(dump, frames["blend"], "calibration", with_test)
    frames["blend"] = blend_median(frames["blend"], "predicted", mix)
    cals = {
        kind: calibrate(
            frames[kind],
            dump["naive"],
            levels=QUANTILE_LEVELS,
            tails=_tailed(tails, kind),
            **(options | per_kind.get(kind, {})),
        )
        for kind in ("lstm", "lightgbm", "blend")
    }
    models = dict(MODELS) | {"trainer": (dump["chosen"], dump["chosen"])}
    out = {}
    for model, (served, cal) in models.items():
        if served in dump["served"]:
            frame = (
                served_frame(dump, served, heldout, unmoved)
                if _tailed(tails, cal)
                else dump["served"][served]
            )
            if served == "blend":
                frame = blend_median(frame, "predicted_units", mix)
            out[model] = cals[cal].apply(frame, column="predicted_units")
    return out


def _tailed(tails: Any, kind: str) -> bool:
    """Whether option `tails` (False, True or a tuple of kinds) gives kind `kind` tails."""
    return bool(tails) and (tails is True or kind in tails)


def served_frame(
    dump: dict[str, Any], served: str, heldout: bool = False, unmoved: bool = False
) -> pd.DataFrame:
    """The served forecasts of `served` with the LightGBM tails the trainer served with
    them (the blend's moved by its difference from LightGBM's point; the held-out
    LightGBM's as they are), or without when the dump has none; `heldout`: the held-out
    tail boosters' (those validation calibrated) instead of the refitted ones."""
    from trainer.models.intervals import with_blend_tails

    frame = dump["served"][served]
    tails = dump.get("served_tails")
    if tails is None or served == "lstm" or tails.empty:
        return frame
    key = ["product_id", "target_date"]
    held = [c for c in tails.columns if str(c).startswith("heldout_tail_")]
    if held and (heldout or served == "lightgbm_heldout"):  # the held-out boosters' tails
        # (a dump without them was made serving the held-out tails: `tail_` are those)
        tails = tails.drop(columns=[c.removeprefix("heldout_") for c in held]).rename(
            columns={c: c.removeprefix("heldout_") for c in held}
        )
    cols = [c for c in tails.columns if str(c).startswith("tail_")]
    merged = frame.merge(tails[[*key, "predicted_units", *cols]], on=key, suffixes=("", "_gbm"))
    if len(merged) != len(frame):
        raise ValueError(f"{dump['cutoff']}: the served tails lack some of {served}'s rows")
    if served == "blend" and (unmoved or not _moved(dump)):
        return merged[[*key, "predicted_units", *cols]]
    if served == "blend":
        gbm = merged[[*key, *cols]].assign(predicted_units=merged["predicted_units_gbm"])
        return with_blend_tails(
            merged[[*key, "predicted_units"]], gbm, "predicted_units", move=True, median_point=0.0
        )
    return merged[[*key, "predicted_units", *cols]]


def _moved(dump: dict[str, Any]) -> bool:
    """Whether the run that made `dump` moved the blend's tails by its difference from
    LightGBM's point (the trainer's first tails; its default since: not moved). The
    median tail is left out: since the fifth pass it is mixed with the blend's point."""
    blend, gbm = dump["calibration"]["blend"], dump["calibration"]["lightgbm"]
    cols = [
        c
        for c in gbm.columns
        if str(c).startswith("tail_") and c in blend.columns and c != "tail_p50"
    ]
    return bool(cols) and not np.allclose(blend[cols].to_numpy(), gbm[cols].to_numpy())


def requantile(
    forecasts: pd.DataFrame, dumps: dict[str, dict[str, Any]], **options: Any
) -> pd.DataFrame:
    """`forecasts` (a kept run's) with the trainer models' quantile columns re-derived
    from `dumps` (cutoff "YYYY-MM-DD" -> dump); a trainer row without a dump raises."""
    from trainer.models.intervals import column_name

    out = forecasts.copy()
    cutoffs = out["cutoff"].dt.strftime("%Y-%m-%d")
    for cutoff in sorted(cutoffs.unique()):
        rows = cutoffs == cutoff
        trainer_rows = rows & out["model"].isin(["trainer", *MODELS])
        if not trainer_rows.any():
            continue
        if cutoff not in dumps:
            raise ValueError(f"no interval dump for cutoff {cutoff}")
        for model, frame in served_quantiles(dumps[cutoff], **options).items():
            mine = rows & (out["model"] == model)
            key = pd.MultiIndex.from_arrays(
                [pd.to_datetime(frame["target_date"]), frame["product_id"].astype(str)]
            )
            where = pd.MultiIndex.from_arrays(
                [out.loc[mine, "date"], out.loc[mine, "product_id"].astype(str)]
            )
            pos = key.get_indexer(where)
            if (pos < 0).any():
                raise ValueError(f"{model} at {cutoff}: served forecasts lack some backtest rows")
            for level in QUANTILE_LEVELS:
                values = frame[column_name(level)].to_numpy(dtype=float)[pos]
                out.loc[mine, quantile_column(level)] = np.clip(values, 0.0, None)
    return out


GUARD_BOOTSTRAP = 500  # resamples of the test days for the guard's sampling error
GUARD_BLOCK = 7  # days: a week of hits resampled together (serial dependence)


def guard_coverage(dump: dict[str, Any], **options: Any) -> tuple[float, float]:
    """The promotion guard's figure under a method: the test-split coverage of the chosen
    kind's [P10, P90] (`trainer.models.intervals.coverage_summary`, as `judge` reads it),
    and its sampling error: the standard deviation over a moving-block bootstrap of the
    test days (blocks of `GUARD_BLOCK` days, all products of a day kept together, so
    serial and cross-product dependence stay in)."""
    from trainer.models.intervals import coverage_summary

    options = dict(options)
    with_test = bool(options.pop("with_test", False))
    kind = dump["chosen"]
    tails = _tailed(options.pop("tails", False), kind)
    options.pop("heldout_tails", None)  # the test split's tails are the held-out ones
    unmoved = bool(options.pop("unmoved_blend_tails", False)) and kind == "blend"
    options |= options.pop("per_kind", {}).get(kind, {})
    mix = float(options.pop("blend_median_point", 0.0)) * (kind == "blend")
    frame = calibration_frame(dump, kind, with_test)
    test_frame = dump["test"][kind]
    if unmoved:
        frame = unmoved_tails(dump, frame, "calibration", with_test)
        test_frame = unmoved_tails(dump, test_frame, "test", False)
    frame = blend_median(frame, "predicted", mix)
    test_frame = blend_median(test_frame, "predicted", mix)
    cal = calibrate(
        frame,
        dump["naive"],
        levels=QUANTILE_LEVELS,
        tails=tails,
        **options,
    )
    test = cal.apply(test_frame)
    coverage = float(coverage_summary(test)["coverage"])
    ok = test["actual"].notna()
    hit = ((test["actual"] >= test["p10"]) & (test["actual"] <= test["p90"]))[ok]
    days = hit.groupby(pd.to_datetime(test.loc[ok, "target_date"]).to_numpy()).agg(["sum", "size"])
    n_days = len(days)
    block = min(GUARD_BLOCK, n_days)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n_days - block + 1, size=(GUARD_BOOTSTRAP, -(-n_days // block)))
    idx = (starts[:, :, None] + np.arange(block)).reshape(GUARD_BOOTSTRAP, -1)[:, :n_days]
    hits, sizes = days["sum"].to_numpy(dtype=float), days["size"].to_numpy(dtype=float)
    boot = hits[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    return coverage, float(np.std(boot))


def variants_rows(
    forecasts: pd.DataFrame,
    scale_frame: pd.DataFrame,
    dumps: dict,
    match: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Per (variant, cutoff): the served `coverage_80`, `coverage_80_p10`, `wspl` and the
    guard's test-split coverage (`guard`, its bootstrap error `guard_sd`) of each
    `VARIANTS` entry (`match`: only those whose name contains one of these strings), and
    the run's reference models' interval fields (no guard)."""
    from experiments.metrics import interval_scores

    rows = []
    for name, options in VARIANTS.items():
        if match and not any(m in name for m in match):
            continue
        new = requantile(forecasts[forecasts["model"] == "trainer"], dumps, **options)
        scores = interval_scores(new, scale_frame).assign(variant=name)
        guard = {c: guard_coverage(d, **options) for c, d in dumps.items()}
        rows.append(
            scores.assign(
                guard=scores["cutoff"].map({c: g[0] for c, g in guard.items()}),
                guard_sd=scores["cutoff"].map({c: g[1] for c, g in guard.items()}),
            )
        )
    refs = forecasts[forecasts["model"].isin(["lightgbm_quantile", "lightgbm_cqr"])]
    if not refs.empty:
        ref = interval_scores(refs, scale_frame)
        rows.append(
            ref.assign(variant=ref["model"] + " (reference)", guard=np.nan, guard_sd=np.nan)
        )
    for name, hybrid in (
        (HYBRID, cqr_hybrid(forecasts)),
        (HYBRID_P50, median_hybrid(forecasts, 1.0)),
        (HYBRID_P50_MEAN, median_hybrid(forecasts, 0.5)),
    ):
        if not hybrid.empty:
            scores = interval_scores(hybrid, scale_frame)
            rows.append(scores.assign(variant=name, guard=np.nan, guard_sd=np.nan))
    return pd.concat(rows, ignore_index=True)


HYBRID = "the trainer's point and P50, CQR's P10/P90 (the run's)"
HYBRID_P50 = "the trainer's P10/P90, quantile LightGBM's P50 (the run's)"
HYBRID_P50_MEAN = "the trainer's P10/P90, P50 the mean of its own and quantile LightGBM's"


def _served_beside(forecasts: pd.DataFrame, model: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The served forecaster's rows indexed by (cutoff, product_id, date) and `model`'s
    rows on the same index; both empty unless the run has both models."""
    key = ["cutoff", "product_id", "date"]
    mine = forecasts[forecasts["model"] == "trainer"].set_index(key)
    other = forecasts[forecasts["model"] == model].set_index(key)
    if mine.empty or other.empty:
        return mine.iloc[:0], other.iloc[:0]
    return mine, other.reindex(mine.index)


def median_hybrid(forecasts: pd.DataFrame, weight: float) -> pd.DataFrame:
    """The served forecaster's rows with P50 `weight` × the run's `lightgbm_quantile` P50
    + (1 − weight) × its own (kept between its P10 and P90): how much a better median
    would move its WSPL. Empty without both models."""
    out, ref = _served_beside(forecasts, "lightgbm_quantile")
    lo, mid, hi = (quantile_column(a) for a in (0.1, 0.5, 0.9))
    if not out.empty:
        out[mid] = np.clip(weight * ref[mid] + (1 - weight) * out[mid], out[lo], out[hi])
    return out.reset_index()


def cqr_hybrid(forecasts: pd.DataFrame) -> pd.DataFrame:
    """The served forecaster's rows with the run's `lightgbm_cqr` P10 and P90 in place of
    its own (kept from crossing its P50): what serving conformalised quantile regression
    for the tails, with the trainer's point forecast, would have scored. Empty without
    both models."""
    out, cqr = _served_beside(forecasts, "lightgbm_cqr")
    lo, mid, hi = (quantile_column(a) for a in (0.1, 0.5, 0.9))
    if not out.empty:
        out[lo] = np.minimum(cqr[lo], out[mid])
        out[hi] = np.maximum(cqr[hi], out[mid])
    return out.reset_index()


def variants_table(table: pd.DataFrame) -> str:
    """Markdown of `variants_rows`: WSPL per cutoff, the means, the cutoffs at or below the
    quantile-LightGBM reference's WSPL, and the guard's figure (mean, range, its standard
    deviation between cutoffs and within one (the bootstrap), the cutoffs where it falls
    outside the promotion guard's bounds)."""
    from trainer.judge.promotion import COVERAGE_BOUNDS

    cutoffs = sorted(table["cutoff"].unique())
    ref = table[table["variant"] == "lightgbm_quantile (reference)"].set_index("cutoff")["wspl"]
    lines = [
        "| variant | " + " | ".join(f"WSPL {c}" for c in cutoffs) + " | coverage_80 | "
        "coverage_80_p10 | WSPL | ≤ reference | guard: mean (range; sd; outside the bounds) |",
        "|---|" + "---|" * (len(cutoffs) + 5),
    ]
    for name, g in table.groupby("variant", sort=False):
        wspl = g.set_index("cutoff")["wspl"]
        cells = " | ".join(f"{wspl.get(c, float('nan')):.4f}" for c in cutoffs)
        both = wspl.index.intersection(ref.index)
        wins = f"{int((wspl[both] <= ref[both]).sum())} of {len(both)}" if len(both) else "–"
        guard = g["guard"].dropna()
        gcell = "–"
        if len(guard):
            lo, hi = COVERAGE_BOUNDS
            outside = int(((guard < lo) | (guard > hi)).sum())
            between = guard.std(ddof=1) if len(guard) > 1 else float("nan")
            gcell = (
                f"{guard.mean():.3f} ({guard.min():.3f}–{guard.max():.3f}; sd between "
                f"cutoffs {between:.3f}, within {g['guard_sd'].mean():.3f}; outside "
                f"{outside} of {len(guard)})"
            )
        lines.append(
            f"| {name} | {cells} | {g['coverage_80'].mean():.3f} | "
            f"{g['coverage_80_p10'].mean():.3f} | {g['wspl'].mean():.4f} | {wins} | {gcell} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write the re-derived run (or, with `--check`, compare it with the run's own)."""
    p = argparse.ArgumentParser(prog="python -m experiments.recalibrate", description=__doc__)
    p.add_argument(
        "--raw",
        type=Path,
        nargs="+",
        required=True,
        help="a run's --out (or its raw/); with --variants, several (e.g. split cutoffs)",
    )
    p.add_argument(
        "--dumps", type=Path, nargs="+", required=True, help="the run's --dump-intervals DIR(s)"
    )
    p.add_argument("--out", type=Path, help="where the re-derived raw/ goes")
    p.add_argument("--level-power", type=float, default=None, help="γ (default: the module's)")
    p.add_argument("--no-zero-mass", action="store_true")
    p.add_argument("--with-test", action="store_true")
    p.add_argument(
        "--tails",
        action="store_true",
        help="the LightGBM kinds' quantile tails, as the trainer serves them (issue 27)",
    )
    p.add_argument("--variants", action="store_true", help="print the VARIANTS table")
    p.add_argument("--json", type=Path, help="with --variants: also write its rows here")
    p.add_argument(
        "--match",
        action="append",
        default=[],
        help="with --variants: only the variants whose name contains this (repeatable)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="compare with the run's own quantiles instead of writing (largest difference)",
    )
    args = p.parse_args(argv)
    raws = [r / "raw" if (r / "raw").is_dir() else r for r in args.raw]
    for r in raws:
        if not (r / "forecasts.csv.gz").is_file():
            p.error(f"--raw {r}: no forecasts.csv.gz (run with --keep-forecasts)")
    if len(raws) > 1 and not args.variants:
        p.error("several --raw runs: only with --variants (merge the re-derived runs instead)")
    raw = raws[0]
    paths = sorted(f for d in args.dumps for f in d.glob("*.pkl"))
    dumps = {d["cutoff"]: d for d in map(load_dump, paths)}
    if not dumps:
        p.error(f"--dumps {' '.join(map(str, args.dumps))}: no <cutoff>.pkl")
    options: dict[str, Any] = {
        "zero_mass": not args.no_zero_mass,
        "with_test": args.with_test,
        "tails": args.tails,
    }
    if args.level_power is not None:
        options["level_power"] = args.level_power
    if args.tails:  # as the trainer serves them: the blend's from LightGBM's, unmoved
        from trainer.models.intervals import BLEND_MEDIAN_POINT

        options |= {"unmoved_blend_tails": True, "blend_median_point": BLEND_MEDIAN_POINT}
    forecasts = pd.concat(
        [pd.read_csv(r / "forecasts.csv.gz", parse_dates=["cutoff", "date"]) for r in raws],
        ignore_index=True,
    )
    if args.variants:
        scale_frame = pd.concat(
            [pd.read_csv(r / "scales.csv", parse_dates=["cutoff"]) for r in raws],
            ignore_index=True,
        ).drop_duplicates(["cutoff", "product_id"])  # runs split by models: the same cutoffs
        rows = variants_rows(forecasts, scale_frame, dumps, tuple(args.match))
        print(variants_table(rows))
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(rows.to_json(orient="records", indent=1), encoding="utf-8")
        return 0
    new = requantile(forecasts, dumps, **options)
    if args.check:
        cols = [quantile_column(a) for a in QUANTILE_LEVELS]
        diff = (new[cols] - forecasts[cols]).abs().max().max()
        print(json.dumps({"max_abs_difference": float(np.nan_to_num(diff))}))
        return 0
    if args.out is None:
        p.error("--out is needed (or --check)")
    target = args.out / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("scales.csv", "timings.csv"):
        shutil.copy(raw / name, target / name)
    new.to_csv(target / "forecasts.csv.gz", index=False)
    meta = json.loads((raw / "meta.json").read_text(encoding="utf-8"))
    meta["command"] += " | python -m experiments.recalibrate " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    (target / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

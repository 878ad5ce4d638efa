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
horizon just before the cutoff). `--variants` prints, instead, the backtest's interval
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

# backtest model -> (the dump's served kind, the calibration's kind); "trainer": the
# kind the trainer chose at that cutoff
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
}
# the options above that are not `fit_intervals`' but transforms of its calibration here
EXTRA_OPTIONS = ("zero_threshold", "lower_power", "lower_rule")


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

    from trainer.models.intervals import fit_intervals

    extra = {k: options.pop(k) for k in EXTRA_OPTIONS if k in options}
    cal = fit_intervals(frame, naive, **options)
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


def calibration_frame(dump: dict[str, Any], kind: str, with_test: bool) -> pd.DataFrame:
    """The forecasts kind `kind` is calibrated on (plus the test split's, `with_test`)."""
    frame = dump["calibration"][kind]
    if with_test:
        if "test" not in dump:
            raise ValueError(f"the dump of {dump['cutoff']} has no test-split forecasts")
        frame = pd.concat([frame, dump["test"][kind]], ignore_index=True)
    return frame


def served_quantiles(
    dump: dict[str, Any], *, with_test: bool = False, **options: Any
) -> dict[str, pd.DataFrame]:
    """backtest model -> its served forecasts with the re-derived quantile columns
    (product_id, target_date, predicted_units, p10, p50, p90)."""
    cals = {
        kind: calibrate(
            calibration_frame(dump, kind, with_test),
            dump["naive"],
            levels=QUANTILE_LEVELS,
            **options,
        )
        for kind in ("lstm", "lightgbm", "blend")
    }
    models = dict(MODELS) | {"trainer": (dump["chosen"], dump["chosen"])}
    out = {}
    for model, (served, cal) in models.items():
        if served in dump["served"]:
            frame = dump["served"][served]
            out[model] = cals[cal].apply(frame, column="predicted_units")
    return out


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
    cal = calibrate(
        calibration_frame(dump, kind, with_test), dump["naive"], levels=QUANTILE_LEVELS, **options
    )
    test = cal.apply(dump["test"][kind])
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


def variants_rows(forecasts: pd.DataFrame, scale_frame: pd.DataFrame, dumps: dict) -> pd.DataFrame:
    """Per (variant, cutoff): the served `coverage_80`, `coverage_80_p10`, `wspl` and the
    guard's test-split coverage (`guard`, its bootstrap error `guard_sd`) of each `VARIANTS` entry, and the run's
    reference models' interval fields (no guard)."""
    from experiments.metrics import interval_scores

    rows = []
    for name, options in VARIANTS.items():
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
    hybrid = cqr_hybrid(forecasts)
    if not hybrid.empty:
        scores = interval_scores(hybrid, scale_frame)
        rows.append(scores.assign(variant=HYBRID, guard=np.nan, guard_sd=np.nan))
    return pd.concat(rows, ignore_index=True)


HYBRID = "the trainer's point and P50, CQR's P10/P90 (the run's)"


def cqr_hybrid(forecasts: pd.DataFrame) -> pd.DataFrame:
    """The served forecaster's rows with the run's `lightgbm_cqr` P10 and P90 in place of
    its own (kept from crossing its P50): what serving conformalised quantile regression
    for the tails, with the trainer's point forecast, would have scored. Empty without
    both models."""
    key = ["cutoff", "product_id", "date"]
    mine = forecasts[forecasts["model"] == "trainer"]
    cqr = forecasts[forecasts["model"] == "lightgbm_cqr"]
    if mine.empty or cqr.empty:
        return mine.iloc[:0]
    lo, mid, hi = (quantile_column(a) for a in (0.1, 0.5, 0.9))
    tails = cqr.set_index(key)[[lo, hi]]
    out = mine.set_index(key)
    out[lo] = np.minimum(tails[lo].reindex(out.index), out[mid])
    out[hi] = np.maximum(tails[hi].reindex(out.index), out[mid])
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
    p.add_argument("--variants", action="store_true", help="print the VARIANTS table")
    p.add_argument("--json", type=Path, help="with --variants: also write its rows here")
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
    options: dict[str, Any] = {"zero_mass": not args.no_zero_mass, "with_test": args.with_test}
    if args.level_power is not None:
        options["level_power"] = args.level_power
    forecasts = pd.concat(
        [pd.read_csv(r / "forecasts.csv.gz", parse_dates=["cutoff", "date"]) for r in raws],
        ignore_index=True,
    )
    if args.variants:
        scale_frame = pd.concat(
            [pd.read_csv(r / "scales.csv", parse_dates=["cutoff"]) for r in raws],
            ignore_index=True,
        )
        rows = variants_rows(forecasts, scale_frame, dumps)
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

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
}
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
    from trainer.models.intervals import fit_intervals

    cals = {
        kind: fit_intervals(
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


def variants_table(forecasts: pd.DataFrame, scale_frame: pd.DataFrame, dumps: dict) -> str:
    """Markdown: each `VARIANTS` entry's served `coverage_80`, `coverage_80_p10` and
    `wspl` per cutoff and on average, and the run's reference models'."""
    from experiments.metrics import interval_scores

    rows = []
    for name, options in VARIANTS.items():
        new = requantile(forecasts[forecasts["model"] == "trainer"], dumps, **options)
        rows.append(interval_scores(new, scale_frame).assign(variant=name))
    refs = forecasts[forecasts["model"].isin(["lightgbm_quantile", "lightgbm_cqr"])]
    if not refs.empty:
        ref = interval_scores(refs, scale_frame)
        rows.append(ref.assign(variant=ref["model"] + " (reference)"))
    table = pd.concat(rows, ignore_index=True)
    cutoffs = sorted(table["cutoff"].unique())
    lines = [
        "| variant | " + " | ".join(f"WSPL {c}" for c in cutoffs) + " | coverage_80 | "
        "coverage_80_p10 | WSPL |",
        "|---|" + "---|" * (len(cutoffs) + 3),
    ]
    for name, g in table.groupby("variant", sort=False):
        wspl = g.set_index("cutoff")["wspl"]
        cells = " | ".join(f"{wspl.get(c, float('nan')):.4f}" for c in cutoffs)
        lines.append(
            f"| {name} | {cells} | {g['coverage_80'].mean():.3f} | "
            f"{g['coverage_80_p10'].mean():.3f} | {g['wspl'].mean():.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write the re-derived run (or, with `--check`, compare it with the run's own)."""
    p = argparse.ArgumentParser(prog="python -m experiments.recalibrate", description=__doc__)
    p.add_argument("--raw", type=Path, required=True, help="a run's --out (or its raw/)")
    p.add_argument("--dumps", type=Path, required=True, help="the run's --dump-intervals DIR")
    p.add_argument("--out", type=Path, help="where the re-derived raw/ goes")
    p.add_argument("--level-power", type=float, default=None, help="γ (default: the module's)")
    p.add_argument("--no-zero-mass", action="store_true")
    p.add_argument("--with-test", action="store_true")
    p.add_argument("--variants", action="store_true", help="print the VARIANTS table")
    p.add_argument(
        "--check",
        action="store_true",
        help="compare with the run's own quantiles instead of writing (largest difference)",
    )
    args = p.parse_args(argv)
    raw = args.raw / "raw" if (args.raw / "raw").is_dir() else args.raw
    if not (raw / "forecasts.csv.gz").is_file():
        p.error(f"--raw {args.raw}: no forecasts.csv.gz (run with --keep-forecasts)")
    dumps = {d["cutoff"]: d for d in map(load_dump, sorted(args.dumps.glob("*.pkl")))}
    if not dumps:
        p.error(f"--dumps {args.dumps}: no <cutoff>.pkl")
    options: dict[str, Any] = {"zero_mass": not args.no_zero_mass, "with_test": args.with_test}
    if args.level_power is not None:
        options["level_power"] = args.level_power
    forecasts = pd.read_csv(raw / "forecasts.csv.gz", parse_dates=["cutoff", "date"])
    if args.variants:
        scale_frame = pd.read_csv(raw / "scales.csv", parse_dates=["cutoff"])
        print(variants_table(forecasts, scale_frame, dumps))
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

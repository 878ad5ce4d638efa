"""The trainer's conformal intervals on the pasta data without training (issue 27).

The interval method (`trainer.models.intervals`, via `trainer.models.challenger.calibrate_intervals`) is
the same for every forecaster; the baselines need no training, so their intervals can
be judged at every backtest cutoff in seconds. For each cutoff (the experiments' six),
the trainer's split is laid over the data up to the cutoff + 28 days: the 28 days after
the cutoff are the test window, the 56 before it validation. The servable baselines
(seasonal naive, moving average) are calibrated on their validation forecasts (origins
every 7 days) and judged on the test window: coverage of [P10, P90], its 10th percentile
over products, the interval score. Beside them, the same baselines with the naive
"empirical" interval of the experiments (`experiments.models.naive.empirical_quantiles`:
the quantiles of the history's differences at the same lag, per product, no
calibration on held-out forecasts) for seasonal naive.

    nice -n 10 .venv/bin/python bench/interval_bench.py [--shrinkage 28] [--level-power G]
        [--zero-mass] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _pasta import pasta_path

CUTOFFS = ("2018-03-05", "2018-06-04", "2018-09-03", "2018-10-08", "2018-11-05", "2018-12-03")


def run(cutoff: str, sales: pd.DataFrame, shrinkage: float = 28.0, **options: object) -> list[dict]:
    """The baselines' interval figures on one cutoff's test window."""
    from trainer.config import TrainConfig
    from trainer.data.prepare import prepare
    from trainer.judge.evaluate import evaluate
    from trainer.models.challenger import calibrate_intervals, interval_coverage
    from trainer.models.intervals import coverage_summary
    from trainer.models.lstm import windows_frame

    end = pd.Timestamp(cutoff) + pd.Timedelta(days=28)
    cfg = TrainConfig(test_days=28, val_days=56, interval_shrinkage=shrinkage)
    prepared = prepare(sales[sales["date"] <= end], cfg)
    t0 = time.perf_counter()
    intervals = calibrate_intervals(prepared, cfg, {}, baseline_options=options)
    seconds = time.perf_counter() - t0
    # the evaluation's baseline forecasts of the test windows, scored with their intervals
    w = prepared.test
    stub = windows_frame(prepared, w, np.zeros((len(w), cfg.horizon)))
    evaluation = evaluate(stub, prepared)
    scores = interval_coverage(intervals, {}, evaluation)
    rows = [
        {"cutoff": cutoff, "forecaster": kind, "calibrate_s": round(seconds, 2), **s}
        for kind, s in scores.items()
    ]
    # seasonal naive with the experiments' empirical quantiles (no held-out calibration)
    from experiments.models.naive import empirical_quantiles

    units = np.nan_to_num(prepared.panel.units)  # (series, days)
    points = evaluation.baseline_predictions
    frames = []
    for s, o in zip(w.series, w.origin, strict=True):
        hist = units[s, :o][:, None]
        point = np.tile(hist[-7:], (4, 1))[: cfg.horizon]
        q = empirical_quantiles(hist, point)
        frames.append(
            pd.DataFrame(
                {
                    "product_id": prepared.panel.product_ids[s],
                    "target_date": prepared.panel.calendar[o : o + cfg.horizon],
                    "p10": q[0.1][:, 0],
                    "p90": q[0.9][:, 0],
                }
            )
        )
    emp = points.merge(pd.concat(frames), on=["product_id", "target_date"])
    rows.append(
        {
            "cutoff": cutoff,
            "forecaster": "seasonal_naive, empirical quantiles",
            **coverage_summary(emp),
        }
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run every cutoff; print a Markdown table (and JSON with --json)."""
    from experiments.data import read_pasta

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path)
    p.add_argument("--shrinkage", type=float, default=28.0, help="TrainConfig.interval_shrinkage")
    p.add_argument(
        "--level-power",
        type=float,
        help="fit_intervals' level_power for the baselines (default: the trainer's "
        "BASELINE_INTERVALS, a fixed scale)",
    )
    p.add_argument(
        "--zero-mass",
        action="store_true",
        help="fit_intervals' zero_mass for the baselines (default: off, as the trainer)",
    )
    args = p.parse_args(argv)
    from trainer.models.challenger import BASELINE_INTERVALS

    options: dict[str, object] = dict(BASELINE_INTERVALS) | {"zero_mass": args.zero_mass}
    if args.level_power is not None:
        options["level_power"] = args.level_power
    sales = read_pasta(pasta_path()).to_long()
    rows = [r for c in CUTOFFS for r in run(c, sales, args.shrinkage, **options)]
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(
        index="forecaster", columns="cutoff", values="coverage", aggfunc="first"
    )
    table["mean"] = table.mean(axis=1)
    p10 = frame.groupby("forecaster")["coverage_p10"].mean()
    score = frame.groupby("forecaster")["interval_score"].mean()
    print(
        "| forecaster | " + " | ".join(table.columns) + " | mean coverage_80_p10 | interval score |"
    )
    print("|" + "---|" * (len(table.columns) + 3))
    for name, row in table.iterrows():
        cells = " | ".join(f"{v:.3f}" for v in row)
        print(f"| {name} | {cells} | {p10[name]:.3f} | {score[name]:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

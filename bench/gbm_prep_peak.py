"""Peak memory of the trainer's preparation and LightGBM rows/bins, without the boosting.

Prepares a `forecastguard synth --out` CSV (or, with `--synth N`, a synthetic catalogue of
N products x `--years` years made in memory by `forecastguard.synth.sales.generate_sales`)
with the defaults and trains the LightGBM ensemble for 5 rounds (`--rounds`; so the peak is the rows
and bins, not minutes of boosting; `--threads`, and the CPU seconds of `train_gbm`
give the CPU cost of a round); prints the process's peak RSS (`ru_maxrss`) after
`prepare` and after `train_gbm`. `--refit` also refits the ensemble on every day
(`refit_gbm`, 5 rounds a member) and `--all-refit-windows` first gathers every window
over every day, as the refit did before issue 26's change (to measure the difference).

    .venv/bin/python bench/gbm_prep_peak.py /tmp/synth300.csv
    .venv/bin/python bench/gbm_prep_peak.py --synth 5000 --years 3 --refit \
        --out bench/results/gbm_prep_peak_5000.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import pandas as pd
from train_bench import read_synth_csv

from trainer.config import TrainConfig
from trainer.data.prepare import prepare
from trainer.models.gbm import refit_gbm, train_gbm


def peak_mb() -> int:
    """The process's peak resident set size so far, in MB (Linux: ru_maxrss is in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def synth_sales(products: int, years: float, seed: int = 26) -> pd.DataFrame:
    """The long sales frame of a synthetic catalogue (the generator of `forecastguard synth`)."""
    from forecastguard.synth.sales import generate_sales

    start = pd.Timestamp("2023-01-01")
    end = start + pd.Timedelta(days=round(years * 365) - 1)
    frame = generate_sales(products, start, end, seed)
    return frame[["product_id", "date", "units_sold", "on_promotion"]].assign(
        on_promotion=lambda f: f["on_promotion"].astype(int)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sales", type=Path, nargs="?", help="a `forecastguard synth --out` CSV")
    parser.add_argument("--synth", type=int, help="products of an in-memory synthetic catalogue")
    parser.add_argument("--years", type=float, default=3.0)
    parser.add_argument("--refit", action="store_true", help="also refit_gbm (5 rounds)")
    parser.add_argument(
        "--all-refit-windows",
        action="store_true",
        help="gather every window over every day first (the refit before issue 26's change)",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="boosting rounds a member (no early stopping)"
    )
    parser.add_argument("--threads", type=int, default=1, help="LightGBM num_threads")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    if (args.sales is None) == (args.synth is None):
        parser.error("give a sales CSV or --synth N")
    t = time.perf_counter()
    sales = read_synth_csv(args.sales) if args.sales else synth_sales(args.synth, args.years)
    result: dict = {"data": str(args.sales or f"synth {args.synth} x {args.years} years")}
    result["product_days"] = len(sales)
    result["after_read_mb"] = peak_mb()
    prepared = prepare(sales, TrainConfig())
    del sales
    result["after_prepare_mb"] = peak_mb()
    result["train_windows"] = len(prepared.train)
    cpu0 = time.process_time()
    gbm = train_gbm(
        prepared, rounds=args.rounds, early_stopping=args.rounds, num_threads=args.threads
    )
    result["train_gbm_cpu_s"] = round(time.process_time() - cpu0, 1)
    result["members_rounds"] = [m.booster.current_iteration() for m in gbm.members]
    result["threads"] = args.threads
    result["after_train_gbm_mb"] = peak_mb()
    if args.all_refit_windows:
        every_day = prepared.refit_windows(through="test")
        result["all_refit_windows"] = len(every_day)
        result["after_all_refit_windows_mb"] = peak_mb()
        del every_day
    if args.refit:
        cpu0 = time.process_time()
        refit_gbm(prepared, gbm, num_threads=args.threads)
        result["refit_gbm_cpu_s"] = round(time.process_time() - cpu0, 1)
        result["after_refit_gbm_mb"] = peak_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    result["wall_s"] = round(time.perf_counter() - t, 1)
    result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

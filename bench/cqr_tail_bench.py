"""What the LightGBM kinds' quantile tails cost (issue 27): CPU of the trainer's LightGBM
stages with and without them, on the real pasta data.

Prepares the data as the trainer does (`TrainConfig()` defaults, or `--train-stride`),
trains the ensemble with its tails (`train_gbm(tail_levels=...)`; the tails,
`train_tails`, timed where they run), refits it and its tails as served (`refit_gbm`,
`gbm.TAIL_REFIT`), and prints the CPU seconds
(`time.process_time`, this process, one LightGBM thread) of each as one JSON document. The LSTM's cost is not measured here: take it from
`bench/train_bench.py` or the backtest's trainer CPU.

    nice -n 10 .venv/bin/python bench/cqr_tail_bench.py [--cutoff 2018-12-03]
        [--train-stride 8] [--tail-rounds 100] [--tail-levels 0.1,0.9]
        [--tail-params '{"num_leaves": 63}'] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import _pasta

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd

from trainer.config import TrainConfig
from trainer.data.load import read_pasta_csv
from trainer.data.prepare import prepare
from trainer.models import gbm


def _cpu(fn, *args, **kw):
    t0 = time.process_time()
    out = fn(*args, **kw)
    return out, round(time.process_time() - t0, 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cutoff", help="last sales day used (default: all the data)")
    p.add_argument("--train-stride", type=int, help="TrainConfig.train_stride (default: its)")
    p.add_argument("--tail-rounds", type=int, default=gbm.TAIL_ROUNDS)
    p.add_argument("--tail-levels", default="0.1,0.9", help="the tails' levels (comma-separated)")
    p.add_argument(
        "--tail-params",
        type=json.loads,
        default={},
        help="JSON object of LightGBM parameters over gbm.TAIL_PARAMS",
    )
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    gbm.TAIL_ROUNDS = args.tail_rounds
    if not isinstance(args.tail_params, dict):
        p.error("--tail-params must be a JSON object")
    gbm.TAIL_PARAMS = {**gbm.TAIL_PARAMS, **args.tail_params}
    sales = read_pasta_csv(_pasta.pasta_path())
    if args.cutoff:
        sales = sales[pd.to_datetime(sales["date"]) <= pd.Timestamp(args.cutoff)]
    cfg = TrainConfig()
    if args.train_stride:
        cfg = replace(cfg, train_stride=args.train_stride)
    prepared = prepare(sales, cfg)
    spent: dict[str, float] = {}
    train_tails = gbm.train_tails

    def timed_tails(*a, **kw):  # the tails' share of train_gbm, timed where it runs
        out, spent["tails"] = _cpu(train_tails, *a, **kw)
        return out

    gbm.train_tails = timed_tails
    levels = tuple(float(x) for x in args.tail_levels.split(","))
    tailed, cpu_with = _cpu(
        gbm.train_gbm, prepared, seed=cfg.seed, num_threads=1, tail_levels=levels
    )
    held_tails = spent["tails"]
    _, cpu_refit = _cpu(gbm.refit_gbm, prepared, tailed, seed=cfg.seed, num_threads=1)
    refit_tails = spent["tails"] if gbm.TAIL_REFIT else 0.0
    point = tailed
    cpu_point = round(cpu_with - held_tails, 2)
    cpu_refit_point = round(cpu_refit - refit_tails, 2)
    result = {
        "cutoff": args.cutoff or "all",
        "train_stride": cfg.train_stride,
        "tail_levels": list(levels),
        "tail_refit": gbm.TAIL_REFIT,
        "tail_rounds": gbm.TAIL_ROUNDS,
        "tail_params": gbm.TAIL_PARAMS,
        "tail_history_days": [m.history_days for m in tailed.tails.values()],
        "member_rounds": point.rounds,
        "cpu_s": {
            "lightgbm_heldout": cpu_point,
            "lightgbm_refit": cpu_refit_point,
            "tails_heldout": round(held_tails, 2),
            "tails_refit": round(refit_tails, 2),
            "tails": round(held_tails + refit_tails, 2),
            "tails_share_of_lightgbm": round(
                (held_tails + refit_tails) / (cpu_point + cpu_refit_point), 3
            ),
        },
        "load_average": os.getloadavg(),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""What the LightGBM kinds' quantile tails cost (issue 27): CPU of the trainer's LightGBM
stages with and without them, on the real pasta data.

Prepares the data as the trainer does (`TrainConfig()` defaults, or `--train-stride`),
trains the ensemble with its tails (`train_gbm`; the tails, `train_tails`, timed where
they run), refits it as served (`refit_gbm`), and prints the CPU seconds
(`time.process_time`, this process, one LightGBM thread) of each as one JSON document. The LSTM's cost is not measured here: take it from
`bench/train_bench.py` or the backtest's trainer CPU.

    nice -n 10 .venv/bin/python bench/cqr_tail_bench.py [--cutoff 2018-12-03]
        [--train-stride 8] [--tail-rounds 100] [--out FILE]
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
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    gbm.TAIL_ROUNDS = args.tail_rounds
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
    tailed, cpu_with = _cpu(gbm.train_gbm, prepared, seed=cfg.seed, num_threads=1)
    _, cpu_refit = _cpu(gbm.refit_gbm, prepared, tailed, seed=cfg.seed, num_threads=1)
    point = tailed
    cpu_point = round(cpu_with - spent["tails"], 2)
    result = {
        "cutoff": args.cutoff or "all",
        "train_stride": cfg.train_stride,
        "tail_levels": list(gbm.TAIL_LEVELS),
        "tail_rounds": gbm.TAIL_ROUNDS,
        "tail_params": gbm.TAIL_PARAMS,
        "tail_history_days": [m.history_days for m in tailed.tails.values()],
        "member_rounds": point.rounds,
        "cpu_s": {
            "lightgbm_heldout": cpu_point,
            "lightgbm_refit": cpu_refit,
            "lightgbm_heldout_with_tails": cpu_with,
            "tails": round(spent["tails"], 2),
            "tails_share_of_lightgbm": round(spent["tails"] / (cpu_point + cpu_refit), 3),
        },
        "load_average": os.getloadavg(),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

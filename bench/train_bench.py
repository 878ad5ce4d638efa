"""Trainer benchmark on the real pasta data (118 products × 5 years).

Times reading the data, the preparation stages and the windowing alone (target ≤ 5 s),
then the challenger's training with the defaults (`TrainConfig()`, `ModelParams()`;
`trainer.models.challenger.train_challenger`: the LSTM with and without group DRO, the bias
offsets, the LightGBM, the choice on validation — everything a training run does but
Optuna tuning; target ≤ 10 minutes on the 2-core machine), and scores the served
forecaster on the test split against the baselines (seasonal naive, moving average,
statsmodels AutoETS-style). Prints one JSON document (also written to `--out`).
`--sales FILE.csv` trains on a long CSV of `forecastguard synth --out` instead (a
synthetic catalogue); `--train-config JSON` overrides `TrainConfig` fields; `--intervals
residual` trains without the LightGBM kinds' quantile model (issue 27: its cost is the
difference of `challenger_training_cpu_s`). Peak memory:
run it under `/usr/bin/time -v` ("Maximum resident set size").

    .venv/bin/python bench/train_bench.py [--out /tmp/train_bench.json] [--no-ets]
    forecastguard synth --products 300 --start 2023-01-01 --end 2024-12-31 --seed 7 \
        --out /tmp/synth300.csv
    /usr/bin/time -v .venv/bin/python bench/train_bench.py --sales /tmp/synth300.csv --no-ets
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import _pasta
import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from forecastguard.logs import configure_logging
from trainer.config import ModelParams, TrainConfig
from trainer.data.load import read_pasta_csv
from trainer.data.prepare import prepare
from trainer.data.windowing import make_windows, origins_every
from trainer.judge.evaluate import evaluate
from trainer.types import Prepared


def _r(x: float, n: int = 4) -> float:
    return round(float(x), n)


def time_windowing(prepared: Prepared, cfg: TrainConfig, repeats: int = 3) -> dict:
    """Windowing alone, the same calls `prepare` makes: views + one gather into arrays."""
    L, H, a = cfg.lookback, cfg.horizon, prepared.arrays
    real = np.flatnonzero(~prepared.panel.synthetic)
    times, times_stride1 = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        train = make_windows(a, origins_every(L, prepared.train_end, cfg.train_stride, H), L, H)
        make_windows(a, np.arange(prepared.train_end, prepared.val_end, H), L, H, series=real)
        make_windows(a, np.arange(prepared.val_end, a.seq.shape[1], H), L, H, series=real)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        every_day = make_windows(a, origins_every(L, prepared.train_end, 1, H), L, H)
        times_stride1.append(time.perf_counter() - t)
        del every_day
    return {
        "windowing_s": [_r(x, 3) for x in times],
        "windowing_stride1_s": [_r(x, 3) for x in times_stride1],
        "windows": {
            "train": len(train),
            "val": len(prepared.val),
            "test": len(prepared.test),
            "train_mb": _r((train.x.nbytes + train.known.nbytes + train.y.nbytes) / 2**20, 1),
            "shape_x": list(train.x.shape),
        },
    }


def read_synth_csv(path: Path) -> pd.DataFrame:
    """The long frame of a `forecastguard synth --out` CSV (product_id,date,units,on_promotion)."""
    frame = pd.read_csv(path, dtype={"product_id": str}, parse_dates=["date"])
    return frame.rename(columns={"units": "units_sold"})[
        ["product_id", "date", "units_sold", "on_promotion"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-ets", action="store_true", help="skip the AutoETS baseline")
    parser.add_argument("--windowing-only", action="store_true", help="stop after timing windowing")
    parser.add_argument(
        "--sales", type=Path, help="a `forecastguard synth --out` CSV instead of the pasta data"
    )
    parser.add_argument("--train-config", default="{}", help="JSON of TrainConfig overrides")
    parser.add_argument(
        "--intervals",
        choices=("served", "residual"),
        default="served",
        help="the LightGBM kinds' intervals: as served (the quantile model, issue 27's ninth "
        "pass) or the residual quantiles alone (no quantile booster: the cost baseline)",
    )
    args = parser.parse_args()
    configure_logging()
    cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **json.loads(args.train_config)})
    params = ModelParams()
    result: dict = {"config": cfg.to_dict(), "params": params.to_dict(), "cpus": os.cpu_count()}

    t = time.perf_counter()
    sales = read_synth_csv(args.sales) if args.sales else read_pasta_csv(_pasta.pasta_path())
    result["data"] = str(args.sales or "pasta")
    result["read_csv_s"] = _r(time.perf_counter() - t, 2)

    t = time.perf_counter()
    prepared = prepare(sales, cfg)
    result["prepare_s"] = _r(time.perf_counter() - t, 2)
    result["quality"] = prepared.quality.totals()
    result["split"] = prepared.split_dates()

    result.update(time_windowing(prepared, cfg))
    if args.windowing_only:
        print(json.dumps(result, indent=2, default=float))
        return

    import trainer.models.challenger as challenger

    challenger.QUANTILE_INTERVALS = args.intervals == "served"
    result["intervals"] = args.intervals
    t, cpu = time.perf_counter(), time.process_time()
    ch = challenger.train_challenger(prepared, params, cfg)
    result["challenger_training_s"] = _r(time.perf_counter() - t, 1)
    result["challenger_training_cpu_s"] = _r(time.process_time() - cpu, 1)
    result["interval_test"] = ch.interval_test.get(ch.kind)
    result["served_kind"] = ch.kind
    result["candidates"] = {k: {n: _r(v) for n, v in c.items()} for k, c in ch.candidates.items()}
    for name, trained in (("lstm_dro", ch.lstm), ("lstm_plain", ch.plain)):
        result[name] = {
            "duration_s": _r(trained.duration_s, 1),
            "epochs_run": trained.epochs_run,
            "best_epoch": trained.best_epoch,
            "s_per_epoch": _r(trained.duration_s / max(trained.epochs_run, 1), 1),
        }
    t = time.perf_counter()
    served = evaluate(ch.test, prepared, auto_ets=not args.no_ets)
    result["evaluate_s"] = _r(time.perf_counter() - t, 1)
    sn = served.metrics["baselines"]["seasonal_naive"]["rmsse"]
    result["test"] = {
        "served": served.metrics["model"],
        "baselines": served.metrics["baselines"],
        "fairness": served.metrics["fairness"],
        "rmsse_vs_seasonal_naive": _r(1 - served.metrics["model"]["rmsse"] / sn),
        "fairness_comparison": ch.fairness_compare,
    }
    result["validation"] = ch.validation
    result["bias"] = {"test_effect": ch.bias_effect, "prior_var": ch.correction.prior_var}
    result["cpu_s"] = _r(time.process_time(), 1)
    result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

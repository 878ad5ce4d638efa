"""The trainer's LightGBM by training-history length, against the reference LightGBM.

At each backtest cutoff (the six of issue 16 by default) on the real pasta data, one
`trainer.data.prepare.prepare` (validation 56 days, test 28, a training window every
`--train-stride` days, as the backtest's `trainer` model) and then the trainer's
LightGBM (`trainer.models.gbm.train_gbm`: early stopping on validation, then `refit_gbm` on
every day, as served) with each `TrainConfig.gbm_history_days` variant:

- `all`: one booster on all history (the trainer before the ensemble);
- `364`, `546`, `728`, `1092`: one booster on that many last days;
- `ensemble`: the default, one booster per length above, forecasts averaged;

and the experiments' reference `lightgbm` ("LightGBM alone": last 728 days, 300 rounds
at learning rate 0.07, nothing held out). Every variant forecasts the 28 days after the
cutoff; the score is the mean per-product RMSSE (`experiments.metrics.scales`, the
backtest's). Prints a markdown table and writes JSON (`--out`).

    .venv/bin/python bench/gbm_history_bench.py [--cutoffs 2018-10-08,...] [--out F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import _pasta
import numpy as np

from experiments.backtest import cutoffs_at, make_task
from experiments.data import read_pasta
from experiments.metrics import scales
from experiments.models.base import ForecastTask
from experiments.models.lgbm import LightGBMGlobal, future_promotions
from experiments.models.lstm import horizon_table
from forecastguard.logs import configure_logging
from forecastguard.scoring import per_group_rmsse
from trainer.config import TrainConfig
from trainer.data.prepare import prepare
from trainer.models.challenger import LIGHTGBM, forecast_served
from trainer.models.gbm import refit_gbm, train_gbm
from trainer.types import Prepared

CUTOFFS = "2018-03-05,2018-06-04,2018-09-03,2018-10-08,2018-11-05,2018-12-03"
ENSEMBLE = TrainConfig().gbm_history_days
VARIANTS: dict[str, tuple[int, ...]] = {
    "all": (0,),
    **{str(d): (d,) for d in ENSEMBLE},
    "ensemble": ENSEMBLE,
}


def mean_rmsse(values: np.ndarray, actual: np.ndarray, scale: np.ndarray) -> float:
    """Mean per-product RMSSE of (H, N) forecasts (`forecastguard.scoring`); days without
    a record (NaN actuals) are not scored."""
    horizon, n = values.shape
    products = np.tile(np.arange(n), horizon)
    return float(np.nanmean(per_group_rmsse(values - actual, products, scale, n)))


def trainer_lightgbm(
    task: ForecastTask, prepared: Prepared, days: tuple[int, ...], threads: int
) -> np.ndarray:
    """(H, N) forecasts of the trainer's LightGBM with history lengths `days`, as served."""
    cfg = dataclasses.replace(prepared.cfg, gbm_history_days=days)
    prep = dataclasses.replace(prepared, cfg=cfg)
    held = train_gbm(prep, seed=cfg.seed, num_threads=threads)
    gbm = refit_gbm(prep, held, seed=cfg.seed, num_threads=threads)
    frame = forecast_served(
        LIGHTGBM,
        model=None,
        params=None,
        correction=None,
        gbm=gbm,
        blend_weight=0.0,
        pipeline=prep.pipeline,
        sales=task.history.to_long(),
        cfg=cfg,
        promotions=future_promotions(task),
    )
    return np.clip(horizon_table(frame, task), 0.0, None)  # NaN: not forecast (none here)


def main() -> None:
    """Run every variant at every cutoff; print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cutoffs", default=CUTOFFS)
    ap.add_argument("--train-stride", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/gbm_history_bench.json"))
    args = ap.parse_args()
    configure_logging("WARNING")
    panel = read_pasta(_pasta.pasta_path().parent)
    cuts = args.cutoffs.split(",")
    scores: dict[str, dict[str, float]] = {}
    for cut, index in zip(cuts, cutoffs_at(panel.dates, cuts, 28), strict=True):
        task = make_task(panel, index, 28)
        actual = panel.units[index + 1 : index + 29]
        scale, _ = scales(task.history.units)
        t0 = time.perf_counter()
        ref = LightGBMGlobal(num_threads=args.threads).forecast(task).values
        scores.setdefault("reference", {})[cut] = mean_rmsse(ref, actual, scale)
        cfg = TrainConfig(horizon=28, val_days=56, test_days=28, train_stride=args.train_stride)
        prepared = prepare(task.history.to_long(), cfg)
        for name, days in VARIANTS.items():
            values = trainer_lightgbm(task, prepared, days, args.threads)
            scores.setdefault(name, {})[cut] = mean_rmsse(values, actual, scale)
        line = ", ".join(f"{k} {v[cut]:.4f}" for k, v in scores.items())
        print(f"{cut} ({time.perf_counter() - t0:.0f} s): {line}", flush=True)
    ref = scores["reference"]
    rows = []
    for name, by_cut in scores.items():
        mean = float(np.mean(list(by_cut.values())))
        wins = sum(by_cut[c] <= ref[c] for c in cuts)
        cells = " | ".join(f"{by_cut[c]:.4f}" for c in cuts)
        rows.append(f"| {name} | {cells} | {mean:.4f} | {wins} of {len(cuts)} |")
    head = " | ".join(c[5:] for c in cuts)
    print(f"\n| LightGBM | {head} | mean | ≤ reference |")
    print("|---|" + "---|" * (len(cuts) + 2))
    print("\n".join(rows))
    args.out.write_text(json.dumps({"cutoffs": cuts, "rmsse": scores}, indent=1))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()

"""Fairness benchmark on the real pasta data: the same model with and without the callback.

For each seed, trains the default model twice on the same prepared data — once with
the fairness callback's re-weighting, once without (the callback then only measures) —
with the same seed, epochs cap and early-stopping rule, and compares the test set's
per-product RMSSE: the mean, the worst decile's mean and the p90/median disparity. Goal:
a lower worst-decile RMSSE with a mean no more than 2% worse. Prints one JSON document.

    .venv/bin/python bench/fairness_bench.py [--seeds 42 43] [--out /tmp/fairness_bench.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import _pasta
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from forecastguard.logs import configure_logging
from trainer import pipeline as tp
from trainer.config import ModelParams, TrainConfig
from trainer.data import read_pasta_csv


def run(prepared: tp.Prepared, cfg: TrainConfig, fairness: bool) -> dict:
    trained = tp.train(prepared, ModelParams(), cfg, fairness=fairness)
    test = tp.predict_split(trained.model, prepared, "test")
    ev = tp.evaluate(test, prepared)
    per = ev.per_product.set_index("product_id")["rmsse"]
    last = trained.fairness_history["epochs"][-1]
    return {
        "test_mean_rmsse": float(per.mean()),
        "test_worst_decile_rmsse": ev.metrics["fairness"]["worst_decile_rmsse"],
        "test_p90_over_median": ev.metrics["fairness"]["disparity_p90_over_median"],
        "test_rmse": ev.metrics["model"]["rmse"],
        "val_mean_rmsse": trained.val_metrics["rmsse"],
        "val_worst_decile_rmsse": trained.val_metrics["worst_decile_rmsse"],
        "epochs_run": trained.epochs_run,
        "best_epoch": trained.best_epoch,
        "duration_s": round(trained.duration_s, 1),
        "max_weight_last_epoch": max(last.get("weights", [1.0])),
        "per_product_rmsse": per.round(4).to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    configure_logging()
    base = TrainConfig()
    prepared = tp.prepare(read_pasta_csv(_pasta.pasta_path()), base)
    runs = []
    for seed in args.seeds:
        cfg = dataclasses.replace(base, seed=seed)
        without = run(prepared, cfg, fairness=False)
        with_cb = run(prepared, cfg, fairness=True)
        runs.append({"seed": seed, "without": without, "with": with_cb})

    def mean(side: str, key: str) -> float:
        return float(np.mean([r[side][key] for r in runs]))

    summary = {}
    for key in ("test_mean_rmsse", "test_worst_decile_rmsse", "test_p90_over_median", "test_rmse"):
        a, b = mean("without", key), mean("with", key)
        summary[key] = {"without": round(a, 4), "with": round(b, 4), "change": round(b / a - 1, 4)}
    summary["goal_met"] = bool(
        summary["test_worst_decile_rmsse"]["change"] < 0
        and summary["test_mean_rmsse"]["change"] <= 0.02
    )
    result = {
        "config": base.to_dict(),
        "params": ModelParams().to_dict(),
        "seeds": args.seeds,
        "summary": summary,
        "runs": [
            {
                "seed": r["seed"],
                **{
                    s: {k: v for k, v in r[s].items() if k != "per_product_rmsse"}
                    for s in ("without", "with")
                },
            }
            for r in runs
        ],
    }
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    **result,
                    "per_product": [
                        {s: r[s]["per_product_rmsse"] for s in ("without", "with")} for r in runs
                    ],
                },
                default=float,
            )
        )


if __name__ == "__main__":
    main()

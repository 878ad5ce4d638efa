"""How much the quantile boosters' recipe moves WSPL (issue 27): a sweep on the pasta data.

The trainer's interval tails are quantile boosters trained cheaply (`trainer.models.gbm`:
`TAIL_ROUNDS` rounds with `TAIL_PARAMS`); the backtest's quantile-LightGBM reference
uses the point model's recipe (more leaves, more rounds). This trains both recipes, and
variants between them (`recipes()`), seeds and level-wise averages (`AVERAGES`), on the
same rows (`experiments.models.lgbm.direct_rows`: windows over the history up to the
cutoff) and scores each cutoff's P10/P50/P90 with the backtest's own `interval_scores`;
`--conformal` also scores each one conformalised as `lightgbm_cqr` is (`<name>+cqr`). It
isolates the boosters' fit from everything else the trainer does to its intervals.
Results: experiments/results/pasta-tail-recipes/.

    python -m experiments.tail_recipe --data ../shared/data/pasta_sales_uci611 \
        --cutoff-dates 2017-03-06,2017-06-05 --out recipes.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.backtest import run_backtest
from experiments.data import read_pasta
from experiments.metrics import interval_scores
from experiments.models.lgbm import LightGBMQuantile
from forecastguard.logs import configure_logging, get_logger

log = get_logger(__name__)


def recipes() -> dict[str, tuple[dict[str, Any], int]]:
    """name -> (parameters over `trainer.models.gbm.PARAMS`, each with its learning rate,
    as `LightGBMQuantile.params`; rounds)."""
    from experiments.models.lgbm import DEFAULT_PARAMS
    from trainer.models.gbm import TAIL_PARAMS, TAIL_ROUNDS

    cheap = {k: v for k, v in TAIL_PARAMS.items() if k != "objective"}
    return {
        "reference": (dict(DEFAULT_PARAMS), LightGBMQuantile.num_boost_round),
        f"tails_{TAIL_ROUNDS}": (cheap, TAIL_ROUNDS),
        "tails_200": (cheap, 200),
        "tails_300": (cheap, 300),
        # which of the cheap recipe's changes costs the fit, and the reference made cheaper
        "reference_leaves_31": ({**DEFAULT_PARAMS, "num_leaves": 31}, 300),
        "reference_bagging_0.5": ({**DEFAULT_PARAMS, "bagging_fraction": 0.5}, 300),
        "reference_lr_0.14_150": ({**DEFAULT_PARAMS, "learning_rate": 0.14}, 150),
        "reference_lr_0.21_100": ({**DEFAULT_PARAMS, "learning_rate": 0.21}, 100),
    }


class _Named:
    """The CQR extra (`lightgbm_cqr`) named after the recipe (`<name>+cqr`)."""

    name: str

    def forecast(self, task: Any) -> Any:
        out = super().forecast(task)  # type: ignore[misc]
        out.extra = {f"{self.name}+cqr": v for v in out.extra.values()}
        out.extra_quantiles = {f"{self.name}+cqr": v for v in out.extra_quantiles.values()}
        return out


@dataclass
class Recipe(_Named, LightGBMQuantile):
    """`LightGBMQuantile` with its parameters and rounds set (`conformal`: its CQR too)."""

    conformal: bool = False


@dataclass
class Average(_Named, LightGBMQuantile):
    """The level-wise mean of several recipes' quantiles (quantile averaging: the
    ensemble's quantile at each level is the mean of its members')."""

    members: tuple[Recipe, ...] = ()
    conformal: bool = False

    def _quantiles(self, task: Any, levels: tuple[float, ...]) -> dict[float, np.ndarray]:
        parts = [m._quantiles(task, levels) for m in self.members]
        return {a: np.mean([p[a] for p in parts], axis=0) for a in levels}


# name -> the recipes averaged ("recipe@seed": the recipe with LightGBM's seed set)
AVERAGES = {
    "mean_reference_tails_100": ("reference", "tails_100"),
    "mean_reference_bagging_0.5": ("reference", "reference_bagging_0.5"),
    "seeds_3_tails_100": ("tails_100@0", "tails_100@1", "tails_100@2"),
    "seeds_3_reference_lr_0.21_100": (
        "reference_lr_0.21_100@0",
        "reference_lr_0.21_100@1",
        "reference_lr_0.21_100@2",
    ),
    "seeds_3_reference": ("reference@0", "reference@1", "reference@2"),
}


def models_for(
    wanted: list[str], *, threads: int = 1, conformal: bool = False
) -> list[LightGBMQuantile]:
    """The sweep's models: each name a recipe of `recipes()` ("name@seed" sets LightGBM's
    seed) or an average of `AVERAGES`."""
    table = recipes()
    unknown = sorted(r for r in wanted if r.partition("@")[0] not in table and r not in AVERAGES)
    if unknown:
        raise ValueError(f"unknown recipe(s) {unknown}; known: {sorted(table) + sorted(AVERAGES)}")

    def recipe(text: str) -> Recipe:
        r, _, seed = text.partition("@")
        if r not in table:
            raise ValueError(f"unknown recipe {r!r} in {text!r}")
        return Recipe(
            name=text,
            params=table[r][0],
            num_boost_round=table[r][1],
            num_threads=threads,
            seed=int(seed or 0),
            conformal=conformal,
        )

    return [
        Average(name=r, members=tuple(recipe(m) for m in AVERAGES[r]), conformal=conformal)
        if r in AVERAGES
        else recipe(r)
        for r in wanted
    ]


def describe(name: str) -> dict[str, Any]:
    """What a sweep name stands for: an average's members, or a recipe's parameters,
    rounds and LightGBM seed ("name@seed"; 0 without)."""
    if name in AVERAGES:
        return {"mean_of": list(AVERAGES[name])}
    recipe, _, seed = name.partition("@")
    params, rounds = recipes()[recipe]
    return {"params": params, "rounds": rounds, "seed": int(seed or 0)}


def sweep(
    panel: Any, models: list[LightGBMQuantile], cutoff_dates: list[str], horizon: int = 28
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per (model, cutoff) `coverage_80`, `coverage_80_p10` and `wspl` of `models` on
    `panel`, and each model's CPU seconds."""
    result = run_backtest(panel, models, horizon=horizon, cutoff_dates=cutoff_dates)
    scores = interval_scores(result.forecasts, result.scales)
    return scores, result.timings.groupby("model")["cpu_s"].sum().round(1).to_dict()


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; print and write per-cutoff WSPL and coverage of every recipe."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the pasta data set's folder")
    ap.add_argument("--cutoff-dates", required=True, help="comma-separated cutoffs")
    ap.add_argument("--recipes", default="", help="comma-separated subset of the recipes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--conformal", action="store_true", help="also score each recipe's CQR (`<name>+cqr`)"
    )
    ap.add_argument("--out", type=Path, required=True, help="JSON of the scores")
    args = ap.parse_args(argv)
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))  # progress: each model, cutoff
    wanted = [r for r in args.recipes.split(",") if r] or list(recipes())
    try:
        models = models_for(wanted, threads=args.threads, conformal=args.conformal)
    except ValueError as exc:
        ap.error(str(exc))
    t0 = time.process_time()
    scores, cpu = sweep(read_pasta(args.data), models, args.cutoff_dates.split(","))
    log.info("done", extra={"cpu_s": round(time.process_time() - t0, 1)})
    with pd.option_context(
        "display.width", 250, "display.max_columns", None, "display.precision", 4
    ):
        print(scores.pivot(index="model", columns="cutoff", values="wspl"))
        print(scores.groupby("model")[["coverage_80", "coverage_80_p10", "wspl"]].mean())
    described = {r: describe(r) for r in wanted}
    args.out.write_text(
        json.dumps(
            {"recipes": described, "scores": scores.to_dict(orient="records"), "cpu_s": cpu},
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

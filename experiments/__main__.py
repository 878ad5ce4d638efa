"""Command line: `python -m experiments --data PATH` (or `--synthetic N`) runs the backtest.

Writes `results.md`, `backtest.png`, `per_product.csv` and `summary.json` into `--out`
(default `experiments/results/<pasta|synthetic>/`). Progress is logged as JSON lines on
stderr, one per model and cutoff.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.backtest import BacktestResult, run_backtest
from experiments.data import Panel, read_pasta, synthetic
from experiments.metrics import (
    COMPARISONS,
    aggregate,
    by_family,
    cell_rmsse,
    family_timings,
    paired_comparison,
    per_cutoff,
    per_product,
)
from experiments.models import MODEL_NAMES, ModelOptions, build_models
from experiments.report import markdown_table, write_report
from forecastguard.logs import configure_logging, get_logger

log = get_logger("experiments")
RESULTS = Path(__file__).resolve().parent / "results"
CUTOFF_DATES = ("2018-03-05", "2018-06-04", "2018-09-03", "2018-10-08", "2018-11-05", "2018-12-03")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line's options."""
    p = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="merge the raw results of runs made with --keep-forecasts (e.g. the cutoffs "
        "split over several processes; their models may differ) into one report in --out",
    )
    src.add_argument(
        "--data", type=Path, help="pasta CSV, or the folder that holds it (read in place)"
    )
    src.add_argument(
        "--synthetic", type=int, metavar="N", help="N products from forecastguard.synth"
    )
    p.add_argument("--synthetic-start", default="2016-01-01")
    p.add_argument("--synthetic-end", default="2018-12-31")
    p.add_argument("--products", type=int, help="keep the first N products (quick runs)")
    p.add_argument(
        "--models",
        default=",".join(MODEL_NAMES),
        help=f"comma-separated, from {','.join(MODEL_NAMES)} (default: all)",
    )
    p.add_argument("--horizon", type=int, default=28)
    p.add_argument(
        "--cutoff-dates",
        default=",".join(CUTOFF_DATES),
        help="comma-separated last days each model sees (default: issue 16's six for the "
        "pasta data); empty: use --cutoffs",
    )
    p.add_argument(
        "--cutoffs",
        type=int,
        default=None,
        help="number of forecast origins tiling the end of the data (instead of --cutoff-dates; "
        "the default for --synthetic: 3)",
    )
    p.add_argument("--step", type=int, help="days between cutoffs (default: the horizon)")
    p.add_argument("--jobs", type=int, default=2, help="processes/threads per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--seeds",
        default="42,43,44",
        help="comma-separated seeds of the neural models (trainer, deepar)",
    )
    p.add_argument("--sarima-history-days", type=int, default=728)
    p.add_argument("--lgbm-rounds", type=int, default=300)
    p.add_argument(
        "--lgbm-last-year",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give LightGBM the trainer's last_year known feature (default: yes)",
    )
    p.add_argument("--deepar-epochs", type=int, default=20)
    p.add_argument("--lstm-epochs", type=int, default=8)
    p.add_argument("--lstm-train-stride", type=int, default=4, help="days between training windows")
    p.add_argument("--out", type=Path, help="output folder (default experiments/results/<dataset>)")
    p.add_argument(
        "--keep-forecasts",
        action="store_true",
        help="also write every forecast (raw/ in --out) so that runs can be merged",
    )
    p.add_argument(
        "--dump-intervals",
        type=Path,
        metavar="DIR",
        help="write the trainer's interval inputs per cutoff (validation forecasts, served "
        "forecasts, naive scales) as DIR/<cutoff>.pkl, for offline interval comparisons",
    )
    p.add_argument(
        "--trainer-tails",
        default=None,
        metavar="LEVELS",
        help="the levels of the trainer's LightGBM kinds' quantile-booster tails (e.g. "
        "0.1,0.9; default: the trainer's, trainer.models.gbm.TAIL_LEVELS; 'none': off, "
        "the residual quantiles alone; issue 27)",
    )
    p.add_argument(
        "--trainer-tail-recipe",
        choices=TAIL_RECIPES,
        default="trainer",
        help="the recipe of the trainer's quantile tails: its own (trainer.models.gbm."
        "TAIL_PARAMS, TAIL_ROUNDS) or the quantile-LightGBM reference's (the point model's "
        "parameters, learning rate 0.07, 300 rounds; issue 27's sixth pass)",
    )
    return p.parse_args(argv)


TAIL_RECIPES = ("trainer", "reference")


def use_tail_recipe(name: str) -> None:
    """Set the trainer's tail recipe for this process (`--trainer-tail-recipe`): the
    trainer runs in-process, so its module's settings are what it trains with."""
    if name not in TAIL_RECIPES:
        raise ValueError(f"unknown tail recipe {name!r}; known: {TAIL_RECIPES}")
    if name == "reference":  # the recipe `experiments.tail_recipe` calls "reference"
        import trainer.models.gbm as gbm
        from experiments.tail_recipe import recipes

        params, rounds = recipes()["reference"]
        gbm.TAIL_PARAMS = {"objective": "quantile", **params}
        gbm.TAIL_ROUNDS = rounds


def trainer_tails(text: str | None) -> tuple[float, ...]:
    """`--trainer-tails`' levels: the trainer's default (None), none ("none", "") or
    the listed ones."""
    if text is None:
        from trainer.models.gbm import TAIL_LEVELS

        return tuple(TAIL_LEVELS)
    if text.strip().lower() == "none":
        return ()
    return tuple(float(x) for x in text.split(",") if x.strip())


def load(args: argparse.Namespace) -> tuple[str, Panel]:
    """The dataset's name and panel."""
    if args.data is not None:
        return "pasta", read_pasta(args.data, products=args.products)
    panel = synthetic(
        args.synthetic, start=args.synthetic_start, end=args.synthetic_end, seed=args.seed
    )
    if args.products:
        panel = panel.select(list(range(min(args.products, len(panel.products)))))
    return "synthetic", panel


def describe_data(args: argparse.Namespace, panel: Panel) -> str:
    """Where the data came from, for the report."""
    if args.data is not None:
        return f"{args.data} ({panel.dates[0].date()} – {panel.dates[-1].date()})"
    return (
        f"forecastguard.synth.generate_sales(n_products={args.synthetic}, seed={args.seed}, "
        f"{args.synthetic_start} – {args.synthetic_end})"
    )


def settings_line(names: list[str], args: argparse.Namespace) -> str:
    """The settings of the models that ran, for the report."""
    parts = {
        "sarima": f"SARIMA fitted on the last {args.sarima_history_days} days of each product",
        "lightgbm": f"LightGBM {args.lgbm_rounds} rounds"
        + (", with the last_year feature" if args.lgbm_last_year else ", without last_year"),
        "deepar": f"DeepAR {args.deepar_epochs} epochs × 50 batches of 64",
        "trainer": (
            f"trainer (LSTMs, its LightGBM, blend, the served choice): trainer defaults except "
            f"at most {args.lstm_epochs} epochs (early stopping, patience 3) and a training "
            f"window every {args.lstm_train_stride} days; seeds {args.seeds}"
        ),
    }
    chosen = [
        text
        for key, text in parts.items()
        if any(n == key or n.startswith(key + "_") or n.endswith("_" + key) for n in names)
    ]
    return "; ".join([*chosen, f"{args.jobs} processes/threads per model"])


RAW = "raw"


def save_raw(out: Path, result: BacktestResult, context: dict[str, Any], command: str) -> Path:
    """Every forecast and what a merge needs, in `out/raw/`."""
    raw = out / RAW
    raw.mkdir(parents=True, exist_ok=True)
    result.forecasts.to_csv(raw / "forecasts.csv.gz", index=False)
    result.scales.to_csv(raw / "scales.csv", index=False)
    result.timings.to_csv(raw / "timings.csv", index=False)
    meta = {
        "command": command,
        "context": context,
        "notes": result.notes,
        "cutoffs": [str(c.date()) for c in result.cutoffs],
        "n_cutoffs": result.n_cutoffs,
        "horizon": result.horizon,
        "products": list(result.products),
    }
    (raw / "meta.json").write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
    return raw


def load_raw(folders: list[Path]) -> tuple[BacktestResult, list[dict[str, Any]]]:
    """Merge the raw results of several runs (disjoint cutoffs, same products and models)."""
    parts, metas = [], []
    for folder in folders:
        raw = folder / RAW if (folder / RAW).is_dir() else folder
        if not (raw / "meta.json").is_file():
            raise SystemExit(f"--merge: {folder} holds no raw results (run with --keep-forecasts)")
        meta = json.loads((raw / "meta.json").read_text(encoding="utf-8"))
        parts.append(
            (
                pd.read_csv(raw / "forecasts.csv.gz", parse_dates=["cutoff", "date"]),
                pd.read_csv(raw / "scales.csv", parse_dates=["cutoff"]),
                pd.read_csv(raw / "timings.csv", parse_dates=["cutoff"]),
            )
        )
        metas.append(meta)
    products = {tuple(m["products"]) for m in metas}
    horizons = {m["horizon"] for m in metas}
    if len(products) != 1 or len(horizons) != 1:
        raise SystemExit("--merge: the runs differ in products or horizon")
    # runs split by cutoffs, or by models at the same cutoffs (a model at a cutoff once)
    cells = [
        (model, c)
        for f, _, _ in parts
        for model, c in f[["model", "cutoff"]].drop_duplicates().itertuples(index=False)
    ]
    if len(set(cells)) != len(cells):
        raise SystemExit("--merge: a model is in more than one run at the same cutoff")
    cutoffs = sorted({c for m in metas for c in m["cutoffs"]})
    # runs may differ in their models (e.g. a costly reference left out of some cutoffs):
    # every table then shows the cutoffs each model ran at
    models = [set(f["model"].unique()) for f, _, _ in parts]
    if any(m != models[0] for m in models):
        log.warning(
            "--merge: the runs differ in their models",
            extra={"models": [sorted(m) for m in models]},
        )
    notes: dict[str, list[dict[str, Any]]] = {}
    for meta in metas:
        for model, rows in meta["notes"].items():
            notes.setdefault(model, []).extend(rows)
    for rows in notes.values():
        rows.sort(key=lambda r: r.get("cutoff", ""))
    result = BacktestResult(
        forecasts=pd.concat([f for f, _, _ in parts], ignore_index=True),
        scales=pd.concat([s for _, s, _ in parts], ignore_index=True).drop_duplicates(
            ["cutoff", "product_id"]
        ),
        timings=pd.concat([t for _, _, t in parts], ignore_index=True),
        notes=notes,
        cutoffs=sorted(pd.Timestamp(c) for c in cutoffs),
        n_cutoffs=len(cutoffs),
        horizon=horizons.pop(),
        products=products.pop(),
    )
    return result, metas


def main(argv: list[str] | None = None) -> int:
    """Run the backtest and write the report; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    if args.merge:
        return merge(args, argv)
    dataset, panel = load(args)
    use_tail_recipe(args.trainer_tail_recipe)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    opts = ModelOptions(
        n_jobs=args.jobs,
        seed=args.seed,
        sarima_history_days=args.sarima_history_days,
        lgbm_rounds=args.lgbm_rounds,
        lgbm_last_year=args.lgbm_last_year,
        deepar_epochs=args.deepar_epochs,
        lstm_epochs=args.lstm_epochs,
        lstm_train_stride=args.lstm_train_stride,
        seeds=tuple(int(x) for x in args.seeds.split(",") if x.strip()),
        interval_dump=args.dump_intervals,
        trainer_tails=trainer_tails(args.trainer_tails),
    )
    cutoff_dates = [d.strip() for d in (args.cutoff_dates or "").split(",") if d.strip()]
    if args.cutoffs is not None or args.synthetic is not None:
        cutoff_dates = []
    n_cutoffs = len(cutoff_dates) or args.cutoffs or 3
    models = build_models(names, opts)
    log.info(
        "backtest started",
        extra={
            "dataset": dataset,
            "products": len(panel.products),
            "days": len(panel.dates),
            "models": names,
            "cutoffs": cutoff_dates or n_cutoffs,
            "horizon": args.horizon,
        },
    )
    start = time.perf_counter()
    out = args.out or RESULTS / dataset
    command = "python -m experiments " + shlex.join(argv)

    written: dict[str, Any] = {}

    def report(result: BacktestResult) -> None:
        done = len(result.cutoffs)
        context = {
            "Data": describe_data(args, panel),
            "Settings": settings_line(names, args),
            "Run time": f"{time.perf_counter() - start:.0f} s for {done} of {n_cutoffs} cutoffs"
            + ("" if done == n_cutoffs else " (partial: the run was still going)"),
        }
        summary, paths = write_all(out, result, command=command, dataset=dataset, context=context)
        if args.keep_forecasts:
            paths["raw"] = save_raw(out, result, context, command)
        written.update(summary=summary, paths=paths)
        log.info(
            "report written", extra={"cutoffs_done": done, **{k: str(v) for k, v in paths.items()}}
        )

    run_backtest(
        panel,
        models,
        horizon=args.horizon,
        n_cutoffs=n_cutoffs,
        step=args.step,
        cutoff_dates=cutoff_dates or None,
        on_cutoff=report,
    )
    print(markdown_table(written["summary"]))
    return 0


def write_all(
    out: Path,
    result: BacktestResult,
    *,
    command: str,
    dataset: str,
    context: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Score `result` and write the report; returns the summary table and the paths."""
    products = by_family(per_product(result.forecasts, result.scales))
    summary = aggregate(products, family_timings(result.timings))
    cells = cell_rmsse(result.forecasts, result.scales)
    comparisons = [c for a, b in COMPARISONS if (c := paired_comparison(cells, a, b)) is not None]
    paths = write_report(
        out,
        result,
        products,
        summary,
        command=command,
        dataset=dataset,
        context=context,
        cutoff_rows=per_cutoff(result.forecasts, result.scales),
        comparisons=comparisons,
    )
    return summary, paths


def merge(args: argparse.Namespace, argv: list[str]) -> int:
    """`--merge DIR...`: one report from the raw results of several runs."""
    result, metas = load_raw(list(args.merge))
    if args.out is None:
        raise SystemExit("--merge needs --out")
    first = metas[0]["context"]
    context = {
        "Data": first.get("Data", ""),
        "Settings": first.get("Settings", ""),
        "Run time": " + ".join(m["context"].get("Run time", "?") for m in metas)
        + f" in {len(metas)} processes (merged)",
        "Runs": "; ".join(f"`{m['command']}`" for m in metas),
    }
    summary, paths = write_all(
        args.out,
        result,
        command="python -m experiments " + shlex.join(argv),
        dataset="pasta" if "pasta" in first.get("Data", "") else "synthetic",
        context=context,
    )
    log.info("merged report written", extra={k: str(v) for k, v in paths.items()})
    print(markdown_table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-partition or whole-catalogue promotion: which serves users better? (issue 26)

Out of sample: a synthetic catalogue (`forecastguard synth`) in `--partitions` hash
partitions of `--size` products. Run A (partitioned) trains on the sales up to 28 days
before the cutoff and becomes the champion; run B trains on the sales up to the cutoff
and judges each partition's challenger against A's member for it. Then the 28 days after
the cutoff, which neither run saw, score:

- per partition: what serves after B (each partition's challenger if it beat A's
  member, else A's member) — what the trainer does;
- as a whole: B's challengers everywhere if their mean test RMSSE over all products beat
  the incumbents' (metrics.json `promotion_modes.whole_promotes`), else A everywhere;
- and, for reference, B's challengers everywhere and A everywhere.

Mean RMSSE over products (each product's RMSE over the 28 days / its one-day naive
scale on its training days). Writes JSON to `--out`. Run with `nice`: it trains
2 x partitions models on the CPU.

    nice -n 10 .venv/bin/python bench/partition_promotion_bench.py --seed 2027
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT / "jobs" / "trainer")]

HORIZON = 28


def _forecasts(store: Any, pointer: Any, sales: pd.DataFrame, workdir: Path) -> pd.DataFrame:
    from trainer.serve.forecast import load_forecaster

    frame = load_forecaster(store, pointer, workdir).forecast(sales)
    return frame[["product_id", "target_date", "predicted_units"]]


def _challengers(store: Any, run_id: str, sales: pd.DataFrame, tmp: Path) -> pd.DataFrame:
    """Run B's challenger of every partition (the kind each chose on validation)."""
    from trainer.serve.artifacts import ChampionPointer
    from trainer.serve.forecast import read_partitions

    doc = read_partitions(store, run_id, tmp / "b-partitions")
    frames = []
    for name, ids in doc["products"].items():
        part_run = f"{run_id}-{name}"
        metrics = store.read_json(f"runs/{part_run}/metrics.json")
        kind = metrics["served_kind_chosen_on_validation"]
        pointer = ChampionPointer(part_run, part_run, "", "", kind=kind)
        frames.append(
            _forecasts(store, pointer, sales[sales["product_id"].isin(ids)], tmp / part_run)
        )
    return pd.concat(frames, ignore_index=True)


def _mean_rmsse(
    forecast: pd.DataFrame, actual: pd.DataFrame, history: pd.DataFrame
) -> tuple[float, pd.Series]:
    from forecastguard.scoring import naive_scale, rmsse

    joined = forecast.assign(target_date=pd.to_datetime(forecast["target_date"])).merge(
        actual.rename(columns={"date": "target_date"}), on=["product_id", "target_date"]
    )
    err = (joined["predicted_units"] - joined["units_sold"]).pow(2)
    rmse = err.groupby(joined["product_id"]).mean().pow(0.5)
    scale = (
        history.sort_values("date")
        .groupby("product_id")["units_sold"]
        .apply(lambda s: float(naive_scale(s.to_numpy()[None, :])[0]))
    )
    per = pd.Series(rmsse(rmse.to_numpy(), scale.reindex(rmse.index).to_numpy()), rmse.index)
    return float(per.mean()), per


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--size", type=int, default=5, help="products per partition")
    ap.add_argument("--days", type=int, default=600, help="days of sales up to the cutoff")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2027)
    ap.add_argument(
        "--out",
        type=Path,
        help="JSON result (default: bench/results/partition_promotion_<seed>.json)",
    )
    args = ap.parse_args(argv)
    args.out = args.out or ROOT / f"bench/results/partition_promotion_{args.seed}.json"

    from forecastguard.config import Settings
    from forecastguard.db.engine import make_engine
    from forecastguard.db.migrate import upgrade
    from forecastguard.logs import configure_logging
    from forecastguard.storage import open_store
    from forecastguard.synth.output import write_database
    from forecastguard.synth.sales import generate_sales
    from trainer.config import TrainConfig
    from trainer.run.main import JobOptions, run_job
    from trainer.serve.artifacts import read_champion

    configure_logging("WARNING")
    n = args.partitions * args.size
    start = pd.Timestamp("2024-01-01")
    cutoff = start + pd.Timedelta(days=args.days - 1)
    full = generate_sales(n, start, cutoff + pd.Timedelta(days=HORIZON), args.seed)
    full = full[["product_id", "date", "units_sold", "on_promotion"]].assign(
        on_promotion=lambda f: f["on_promotion"].astype(int)
    )
    tmp = Path(tempfile.mkdtemp(prefix="fg-partition-bench-"))
    url, uri = f"sqlite:///{tmp / 'fg.db'}", (tmp / "artifacts").as_uri()
    engine, store = make_engine(url), open_store(uri)
    upgrade(engine)
    settings = Settings.from_env({}, database_url=url, artifact_uri=uri)
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed)

    def opts(run_id: str) -> JobOptions:
        return JobOptions(
            mode="train",
            run_id=run_id,
            study_id=run_id,
            train_config=cfg,
            trials=args.trials,
            timeout_s=60,
            partition_size=args.size,
            shap_products=1,
        )

    timings = {}
    a_end = cutoff - pd.Timedelta(days=HORIZON)
    write_database(engine, full[full["date"] <= a_end])
    t0 = time.perf_counter()
    if run_job(settings, opts("bench-a"), engine=engine, store=store) != 0:
        raise SystemExit("run A failed")
    timings["run_a_s"] = round(time.perf_counter() - t0, 1)
    pointer_a = read_champion(store)
    write_database(engine, full[(full["date"] > a_end) & (full["date"] <= cutoff)])
    t0 = time.perf_counter()
    if run_job(settings, opts("bench-b"), engine=engine, store=store) != 0:
        raise SystemExit("run B failed")
    timings["run_b_s"] = round(time.perf_counter() - t0, 1)
    metrics_b = store.read_json("runs/bench-b/metrics.json")

    history = full[full["date"] <= cutoff]
    actual = full[full["date"] > cutoff][["product_id", "date", "units_sold"]]
    f_a = _forecasts(store, pointer_a, history, tmp / "a")
    f_b = _challengers(store, "bench-b", history, tmp)
    doc = store.read_json("runs/bench-b/partitions.json")
    changed = set(metrics_b["changed_partitions"])
    b_products = {p for name in changed for p in doc["products"][name]}
    per_partition = pd.concat(
        [f_b[f_b["product_id"].isin(b_products)], f_a[~f_a["product_id"].isin(b_products)]]
    )
    whole_promotes = bool(metrics_b["promotion_modes"]["whole_promotes"])
    scores = {
        "per_partition": _mean_rmsse(per_partition, actual, history)[0],
        "whole": _mean_rmsse(f_b if whole_promotes else f_a, actual, history)[0],
        "challengers_everywhere": _mean_rmsse(f_b, actual, history)[0],
        "champion_a_everywhere": _mean_rmsse(f_a, actual, history)[0],
    }
    result = {
        "seed": args.seed,
        "products": n,
        "partitions": args.partitions,
        "days": args.days,
        "epochs": args.epochs,
        "changed_partitions": sorted(changed),
        "whole_promotes": whole_promotes,
        "in_sample_test_window": metrics_b["promotion_modes"],
        "out_of_sample_next_28_days": scores,
        "timings": timings,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

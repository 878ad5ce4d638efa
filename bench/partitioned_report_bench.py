"""What the partitioned run's report costs (issue 26): the gather's side and the tasks'.

`gather` (default): for each `--partitions` N, a fresh process builds N synthetic
done-markers of `--size` products each (per-product RMSSE of the challenger, champion,
best baseline and served; a SHAP document of `--features` features and 3 worst
products, as `trainer.report.partitioned.shap_document` writes it), then does what the
gather does for the report (`trainer.run.partitioned.gathered_report`: the
per-partition and per-product tables, SHAP merged, the plots drawn, Markdown and HTML
rendered; then the CSV files as `write_report` writes them). Per N: CPU time (user +
sys) of the report, the process's peak RSS before (the markers) and after it, and the
sizes of what is written and emailed.

`shap`: the tasks' side. For each `--shap-sizes` S, a synthetic catalogue of S products
(`forecastguard synth`, `--days` days) is prepared, its challenger trained (1 epoch, one
trial's default parameters) and its served kind explained as a partition's task does
(`trainer.run.partitioned.explain_partition`, `SHAP_PRODUCTS` products, at least the
3 worst), by default as the blend whatever validation chose (`--kind`: both explainers,
the costliest): CPU and wall time of the SHAP stage, how many windows it explained, and
the peak RSS before and after it. The sample is bounded by SHAP_PRODUCTS, so neither
should grow with S.

Writes JSON to `--out`. Run with nice:

    nice -n 10 .venv/bin/python bench/partitioned_report_bench.py gather \
        --out bench/results/partitioned_report_gather.json
    nice -n 10 .venv/bin/python bench/partitioned_report_bench.py shap \
        --out bench/results/partitioned_report_shap.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT / "jobs" / "trainer")]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _markers(n: int, size: int, features: int, seed: int) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    kinds = ["lstm", "lightgbm", "blend", "baseline:seasonal_naive"]
    names = [f"f{i:02d}" for i in range(features)]
    out = []
    for p in range(n):
        ids = [f"S{p:05d}_{i:04d}" for i in range(size)]
        ch = rng.gamma(4, 0.2, size)
        champ = ch * rng.uniform(0.8, 1.2, size)
        base = ch * rng.uniform(0.9, 1.5, size)
        promote = bool(ch.mean() < champ.mean())
        served = ch if promote else champ
        kind = kinds[p % 4] if promote else kinds[(p + 1) % 3]
        worst = [ids[i] for i in np.argsort(-ch)[:3]]
        explained = not kind.startswith("baseline:")
        summary = [
            {
                "feature": f,
                "input": "history",
                "model": "lstm",
                "mean_abs_shap": float(v),
                "mean_shap": float(-v / 2),
                "sum_abs_shap_over_steps": float(7 * v),
            }
            for f, v in zip(names, rng.gamma(1, 1, features), strict=True)
        ]
        out.append(
            {
                "partition": f"p{p:04d}",
                "products": ids,
                "changed": promote,
                "decision": {
                    "promote": promote,
                    "reason": "synthetic",
                    "against": "champion",
                    "fallback": None,
                },
                "serving": {"kind": kind, "model_version": f"v{p}"},
                "challenger_kind": kind,
                "candidates": {"lstm": {}, "lightgbm": {}, "blend": {}},
                "intervals": {"served": {"coverage": float(rng.uniform(0.7, 0.9))}},
                "shap": {
                    "settings": {"kind": kind, "explained": explained, "reason": "a baseline"},
                    "products": 8,
                    "windows": 64,
                    "summary": summary if explained else [],
                    "worst": [
                        {
                            "product_id": w,
                            "feature": f,
                            "input": "history",
                            "model": "lstm",
                            "mean_abs_shap": 1.0,
                        }
                        for w in worst
                        for f in names[:5]
                    ]
                    if explained
                    else [],
                },
                "per_product": {
                    "challenger": dict(zip(ids, ch.tolist(), strict=True)),
                    "champion": dict(zip(ids, champ.tolist(), strict=True)),
                    "baseline": dict(zip(ids, base.tolist(), strict=True)),
                    "served": dict(zip(ids, served.tolist(), strict=True)),
                },
            }
        )
    return out


def gather_one(n: int, size: int, features: int) -> dict[str, Any]:
    """In this process: the report of N synthetic partitions (see the module doc)."""
    from forecastguard.safetext import csv_text
    from trainer.judge.promotion import Decision
    from trainer.run.options import JobOptions
    from trainer.run.partitioned import Plan, gathered_report, served_means
    from trainer.run.partitions import Partition, Partitioning

    markers = _markers(n, size, features, seed=n)
    parts = tuple(Partition(m["partition"], "", i, i + 1) for i, m in enumerate(markers))
    plan = Plan(Partitioning(size, None, parts), {}, {})
    opts = JobOptions(mode="train", run_id="bench", study_id="bench")
    peak_markers = _peak_mb()
    cpu0, wall0 = _cpu(), time.perf_counter()
    means = served_means(markers)  # the gather computes it for metrics.json anyway
    cpu_means = _cpu() - cpu0
    report = gathered_report(
        markers, means, Decision(True, "bench", "champion"), plan, {"model_version": "b"}, 1.3, opts
    )
    files = {
        "partitions.csv": csv_text(report.data.partitions),
        "per_product.csv": csv_text(report.per_product),
        "shap/summary.csv": csv_text(report.data.shap_summary),
        "report.md": report.markdown,
        "report.html": report.html,
    }
    cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
    return {
        "partitions": n,
        "products": n * size,
        "report_error": report.error,
        "plot_errors": report.data.plot_errors,
        "cpu_s_served_means": round(cpu_means, 3),
        "cpu_s_report_and_csv": round(cpu - cpu_means, 3),
        "wall_s": round(wall, 3),
        "peak_rss_mb_markers": round(peak_markers, 1),
        "peak_rss_mb_after_report": round(_peak_mb(), 1),
        "bytes": {k: len(v.encode()) for k, v in files.items()}
        | {k: len(v) for k, v in report.plots.items()},
        "table_rows": report.markdown.count("| synthetic |"),
    }


def shap_one(size: int, days: int, shap_products: int, kind: str | None) -> dict[str, Any]:
    """In this process: one partition of `size` products trained and explained."""
    from dataclasses import replace

    import pandas as pd

    from forecastguard.synth.sales import generate_sales
    from trainer.config import ModelParams, TrainConfig
    from trainer.data.prepare import prepare
    from trainer.models.challenger import train_challenger
    from trainer.run.options import JobOptions
    from trainer.run.partitioned import explain_partition
    from trainer.serve.forecast import TRAINED_KINDS

    cfg = replace(TrainConfig(), epochs=1)
    start = pd.Timestamp("2024-01-01")
    sales = generate_sales(size, start, start + pd.Timedelta(days=days - 1), seed=size)
    sales = sales[["product_id", "date", "units_sold", "on_promotion"]].assign(
        on_promotion=lambda f: f["on_promotion"].astype(int)
    )
    prepared = prepare(sales, cfg)
    ch = train_challenger(prepared, ModelParams(), cfg, kinds=TRAINED_KINDS)
    chosen = ch.kind
    if kind:  # explain this kind whatever validation chose (the blend runs both explainers)
        ch = replace(ch, kind=kind)

    from types import SimpleNamespace

    # The partition's judgement as explain_served reads it: the challenger serves.
    judgement = SimpleNamespace(serving={"kind": ch.kind, "model_version": "bench"})
    opts = JobOptions(mode="train", run_id="bench", study_id="bench", shap_products=shap_products)
    peak_before = _peak_mb()
    cpu0, wall0 = _cpu(), time.perf_counter()
    e = explain_partition(ch, prepared, ModelParams(), judgement, "bench", opts)
    return {
        "products": size,
        "days": days,
        "train_windows": len(prepared.train),
        "kind_chosen_on_validation": chosen,
        "kind_explained": ch.kind,
        "explained": e.explained,
        "reason": e.settings.get("reason"),
        "explained_products": len(e.settings.get("products", [])),
        "explained_windows": len(e.values.get("product_id", [])),
        "shap_cpu_s": round(_cpu() - cpu0, 2),
        "shap_wall_s": round(time.perf_counter() - wall0, 2),
        "peak_rss_mb_before_shap": round(peak_before, 1),
        "peak_rss_mb_after_shap": round(_peak_mb(), 1),
    }


def _child(args: list[str]) -> dict[str, Any]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the benchmark (`gather` or `shap`), each size in a fresh process."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["gather", "shap", "gather-one", "shap-one"])
    ap.add_argument("--partitions", type=int, nargs="+", default=[10, 100, 1000, 10000])
    ap.add_argument("--size", type=int, default=100, help="products per partition (gather)")
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--shap-sizes", type=int, nargs="+", default=[10, 40])
    ap.add_argument("--days", type=int, default=400)
    ap.add_argument("--shap-products", type=int, default=8)
    ap.add_argument("--kind", default="blend", help="kind to explain ('' = the chosen one)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.mode == "gather-one":
        print(json.dumps(gather_one(a.partitions[0], a.size, a.features)))
        return
    if a.mode == "shap-one":
        print(json.dumps(shap_one(a.shap_sizes[0], a.days, a.shap_products, a.kind or None)))
        return
    runs = []
    if a.mode == "gather":
        for n in a.partitions:
            runs.append(
                _child(
                    [
                        "gather-one",
                        "--partitions",
                        str(n),
                        "--size",
                        str(a.size),
                        "--features",
                        str(a.features),
                    ]
                )
            )
            print(json.dumps(runs[-1]), flush=True)
    else:
        for s in a.shap_sizes:
            runs.append(
                _child(
                    [
                        "shap-one",
                        "--shap-sizes",
                        str(s),
                        "--days",
                        str(a.days),
                        "--shap-products",
                        str(a.shap_products),
                        "--kind",
                        a.kind,
                    ]
                )
            )
            print(json.dumps(runs[-1]), flush=True)
    result = {
        "bench": f"partitioned_report_{a.mode}",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "runs": runs,
    }
    if a.out:
        a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

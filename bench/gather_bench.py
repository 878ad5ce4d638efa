"""The partitioned gather at catalogue scale (issue 26): memory, CPU and time of task 0's
steps after every partition is done, from synthetic partition results.

Steps, each in a fresh process so its peak RSS is its own (`VmHWM` reset with
`/proc/self/clear_refs` after the set-up, read after the step):

- `residuals`: `record_partitioned` as the gather calls it — a generator reading each
  changed partition's `holdout.csv` (`--days` holdout days per product, written
  beforehand as the partitions' tasks do) and, for `--kept-share` of the partitions,
  `Carried` residuals of an earlier champion (seeded beforehand, not measured), streamed
  into `model_residuals` in chunks, then the crown.
- `residuals-old`: the code before the streaming gather, for comparison: every residual
  row as a dict in one list (`residual_rows`; kept partitions read back as dicts) and one
  transaction (`upsert_rows`). Only for catalogues whose rows fit here.
- `markers`: the done-markers' per-product content (four RMSSE columns per product, the
  product lists) as `collect` holds it, then `served_means`, `product_table`,
  `partition_table`, the served RMSSE list and `partitions.json` as the gather builds them.

Measured per step: wall and CPU seconds (user + sys, `resource.getrusage`), peak RSS of
the step, rows written, rows/CPU second; the load average before and after. Results: JSON
at `--out` (default `bench/results/gather_<products>.json`).

    nice -n 10 .venv/bin/python bench/gather_bench.py --products 100000 \
        --steps residuals residuals-old markers
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT / "jobs" / "trainer")]

OLD = "old-champion"
NEW = "gathered"
START = pd.Timestamp("2026-01-05")
COLUMNS = ("challenger", "champion", "baseline", "served")  # a marker's per-product RMSSE


def _products(n: int) -> list[str]:
    return [f"FOODS_{i % 7}_{i:07d}" for i in range(n)]


def _partitions(n: int, size: int) -> dict[str, list[str]]:
    ids = _products(n)
    return {f"p{i // size:05d}": ids[i : i + size] for i in range(0, n, size)}


def _holdout(products: list[str], days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.date_range(START, periods=days).strftime("%Y-%m-%d").to_numpy()
    n = len(products) * days
    actual = rng.poisson(3.0, n).astype(float)
    return pd.DataFrame(
        {
            "product_id": np.repeat(np.asarray(products, dtype=object), days),
            "origin": dates[0],
            "target_date": np.tile(dates, len(products)),
            "actual": actual,
            "predicted": np.round(actual + rng.normal(0, 1.5, n), 4),
        }
    )


def _kept(names: list[str], share: float) -> set[str]:
    return set(names[: round(len(names) * share)])


def _peak_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """The database (migrated, the earlier champion's residuals of the kept partitions)
    and each changed partition's holdout.csv in the workdir."""
    from forecastguard.db.engine import make_engine
    from forecastguard.db.migrate import upgrade
    from trainer.judge.promotion import Decision, record, write_residuals

    t, c = time.monotonic(), _cpu()
    parts = _partitions(args.products, args.partition_size)
    kept = _kept(list(parts), args.kept_share)
    engine = make_engine(args.url)
    upgrade(engine)
    record(
        engine,
        model_version=OLD,
        run_id=OLD,
        run_uri="file:///bench/old",
        metrics={"model": {"rmsse": 1.0}},
        decision=Decision(True, "seeded", "champion"),
        holdout=pd.DataFrame(columns=["product_id", "target_date", "actual", "predicted"]),
    )
    seeded = write_residuals(
        engine,
        OLD,
        (_holdout(parts[n], args.days, i) for i, n in enumerate(parts) if n in kept),
    )
    folder = args.workdir / "holdout"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(parts):
        if name not in kept:
            _holdout(parts[name], args.days, i).to_csv(folder / f"{name}.csv", index=False)
    engine.dispose()
    return {
        "seeded_rows": seeded,
        "changed_partitions": len(parts) - len(kept),
        "kept_partitions": len(kept),
        "wall_s": round(time.monotonic() - t, 1),
        "cpu_s": round(_cpu() - c, 1),
    }


def step_residuals(args: argparse.Namespace, old: bool) -> dict[str, Any]:
    """The gather's residual write, streamed (or, `old`, as before)."""
    from forecastguard.db.engine import make_engine
    from trainer.judge.promotion import Carried, record_partitioned

    parts = _partitions(args.products, args.partition_size)
    kept = _kept(list(parts), args.kept_share)
    folder = args.workdir / "holdout"
    engine = make_engine(args.url)
    with engine.begin() as conn:  # a previous step's run of the same version
        from forecastguard.db.schema import model_registry, model_residuals

        conn.execute(model_residuals.delete().where(model_residuals.c.model_version == NEW))
        conn.execute(model_registry.delete().where(model_registry.c.model_version == NEW))
        conn.execute(
            model_registry.update()
            .where(model_registry.c.model_version == OLD)
            .values(status="champion")
        )

    def read(name: str) -> pd.DataFrame:  # as the gather reads it from the store
        return pd.read_csv(io.StringIO((folder / f"{name}.csv").read_text()))

    def residuals() -> Iterator[Any]:
        for name, products in parts.items():
            yield Carried(OLD, products) if name in kept else read(name)

    _peak_reset()
    base = _hwm_mb()
    t, c = time.monotonic(), _cpu()
    common = {
        "model_version": NEW,
        "run_id": NEW,
        "run_uri": "file:///bench/new",
        "metrics": {"model": {"rmsse": 0.9}},
        "reason": "bench",
    }
    if old:
        rows = _old_record(engine, parts, kept, read, common)
    else:
        rows = record_partitioned(engine, residuals=residuals(), **common)
    out = {
        "rows": rows,
        "wall_s": round(time.monotonic() - t, 2),
        "cpu_s": round(_cpu() - c, 2),
        "rss_before_mb": round(base, 1),
        "peak_rss_mb": round(_hwm_mb(), 1),
    }
    out["rows_per_cpu_s"] = round(rows / max(out["cpu_s"], 1e-9))
    engine.dispose()
    return out


def _old_record(engine, parts, kept, read, common) -> int:
    """The gather before the streaming write (commit 9aaadbf): one list of dicts, one
    transaction."""
    import sqlalchemy as sa

    from forecastguard.db.schema import model_registry, model_residuals
    from forecastguard.db.upsert import upsert_rows
    from trainer.judge.promotion import residual_rows

    rows: list[dict[str, Any]] = []
    for name, products in parts.items():
        if name in kept:
            with engine.connect() as conn:
                for i in range(0, len(products), 1000):
                    got = conn.execute(
                        sa.select(
                            model_residuals.c.product_id,
                            model_residuals.c.target_date,
                            model_residuals.c.error,
                        ).where(
                            model_residuals.c.model_version == OLD,
                            model_residuals.c.product_id.in_(products[i : i + 1000]),
                        )
                    ).all()
                    rows += [
                        {"model_version": OLD, "product_id": p, "target_date": d, "error": e}
                        for p, d, e in got
                    ]
        else:
            rows += residual_rows(NEW, read(name))
    rows = [r | {"model_version": NEW} for r in rows]
    with engine.begin() as conn:
        conn.execute(
            sa.update(model_registry)
            .where(model_registry.c.status == "champion")
            .values(status="retired")
        )
        upsert_rows(conn, model_residuals, rows)
    return len(rows)


def step_markers(args: argparse.Namespace) -> dict[str, Any]:
    """The done-markers' per-product content and the gather's catalogue-sized tables."""
    from trainer.report.partitioned import partition_table, product_table
    from trainer.run.partitioned import served_means

    parts = _partitions(args.products, args.partition_size)
    rng = np.random.default_rng(1)
    _peak_reset()
    base = _hwm_mb()
    t, c = time.monotonic(), _cpu()
    markers = []
    for name, products in parts.items():  # as `collect` holds them (JSON round trip)
        values = rng.uniform(0.3, 1.5, (4, len(products))).round(6).tolist()
        doc = {
            "partition": name,
            "run_id": f"run-{name}",
            "products": products,
            "decision": {"promote": True, "reason": "bench", "against": "champion"},
            "changed": True,
            "has_holdout": True,
            "serving": {"kind": "lightgbm", "model_version": f"run-{name}"},
            "challenger_kind": "lightgbm",
            "candidates": {},
            "intervals": {"served": None},
            "shap": {"settings": {}},
            "per_product": {
                col: dict(zip(products, v, strict=True))
                for col, v in zip(COLUMNS, values, strict=True)
            },
        }
        markers.append(json.loads(json.dumps(doc)))
    held = _hwm_mb()
    times = {"markers_held": round(time.monotonic() - t, 2)}
    s = time.monotonic()
    means = served_means(markers)
    times["served_means"] = round(time.monotonic() - s, 2)
    s = time.monotonic()
    served = [v for m in markers for v in m["per_product"]["served"].values() if v is not None]
    float(np.mean(served))
    doc = {
        "entries": {m["partition"]: m["serving"] for m in markers},
        "products": {m["partition"]: m["products"] for m in markers},
    }
    size = len(json.dumps(doc))
    times["served_list_and_partitions_json"] = round(time.monotonic() - s, 2)
    s = time.monotonic()
    per_product = product_table(markers)
    table = partition_table(markers, {})
    times["product_and_partition_tables"] = round(time.monotonic() - s, 2)
    return {
        "products": means["products"],
        "partitions": len(table),
        "per_product_rows": len(per_product),
        "partitions_json_bytes": size,
        "wall_s": times,
        "cpu_s": round(_cpu() - c, 2),
        "rss_before_mb": round(base, 1),
        "rss_with_markers_mb": round(held, 1),
        "peak_rss_mb": round(_hwm_mb(), 1),
    }


def _child(args: argparse.Namespace) -> None:
    if args.step == "setup":
        doc = setup(args)
    elif args.step in ("residuals", "residuals-old"):
        doc = step_residuals(args, old=args.step == "residuals-old")
    elif args.step == "markers":
        doc = step_markers(args)
    else:
        raise SystemExit(f"unknown step {args.step!r}")
    print("RESULT " + json.dumps(doc), flush=True)


def _run_step(step: str, argv: list[str]) -> dict[str, Any]:
    load = list(os.getloadavg())
    proc = subprocess.run(
        [sys.executable, __file__, "--step", step, *argv], capture_output=True, text=True
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"step {step} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    doc = json.loads(lines[-1][len("RESULT ") :])
    doc["load_avg_before_after"] = [round(load[0], 2), round(os.getloadavg()[0], 2)]
    print(f"{step}: {json.dumps(doc)}", flush=True)
    return doc


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the options; run the set-up and each step in its own process; write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=56, help="holdout days per product")
    ap.add_argument("--partition-size", type=int, default=5000)
    ap.add_argument("--kept-share", type=float, default=0.25, help="partitions kept (carried)")
    ap.add_argument("--url", help="database URL (default: SQLite in the workdir)")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--steps", nargs="+", default=["residuals", "markers"])
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.products < 1 or args.days < 1 or args.partition_size < 1:
        raise SystemExit("--products, --days and --partition-size must be >= 1")
    if not 0.0 <= args.kept_share <= 1.0:
        raise SystemExit("--kept-share must be within [0, 1]")
    if args.step:
        _child(args)
        return {}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fg-gather-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.url or f"sqlite:///{workdir / 'gather.db'}"
    common = [
        f"--products={args.products}",
        f"--days={args.days}",
        f"--partition-size={args.partition_size}",
        f"--kept-share={args.kept_share}",
        f"--url={url}",
        f"--workdir={workdir}",
    ]
    result: dict[str, Any] = {
        "products": args.products,
        "holdout_days": args.days,
        "partition_size": args.partition_size,
        "kept_share": args.kept_share,
        "database": url.split(":", 1)[0],
        "cpus": os.cpu_count(),
        "measured_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "setup": _run_step("setup", common),
    }
    for step in args.steps:
        result[step] = _run_step(step, common)
    if "sqlite" in url:
        result["database_mb"] = round((workdir / "gather.db").stat().st_size / 2**20)
    out = args.out or ROOT / f"bench/results/gather_{args.products}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

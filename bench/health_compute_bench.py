"""Benchmark of the health check's compute: `compute_health` on an in-memory window.

No database: a synthetic window (`tests.integration.health.synthetic`, the data of
`bench/health_bench.py`) of 10,000 products x 30 days with its reference days and,
with `--intervals`, the served P10/P90 on the window's days (as `health_bench.py`
stores them) is built in a fresh process, then `compute_health` runs on it: the first
check of the process (lazy imports and tables included: the cold start of a function
instance), then `--repeats` more (a warm instance; their median and minimum). Each
child reports the CPU time (user + system, all threads) and the wall time, the traced
working-memory peaks of the check's two steps (a separate run under tracemalloc, after
the timed ones), and a digest of the result (every per-product column and the summary,
bit for bit), so code trees can be compared on the same data. `--varied` makes the data uneven (missing days,
intermittent, constant and zero-sales products, holdout references, shuffled rows).

    .venv/bin/python bench/health_compute_bench.py [--products 10000]
        [--reference-days 90] [--intervals] [--varied] [--rounds 3] [--repeats 5]
        [--tree new=shared --tree old=/tmp/old/shared] [--json out.json]

`--service-db PATH` runs the whole check instead (`HealthService.run`: read, compute,
store, metrics) on a copy of an SQLite database `health_bench.py --fill-only
--sqlite-path PATH [--intervals] [--reference-days N]` filled, 1 + `--repeats` checks a
process (each its CPU, its compute's CPU, the peak RSS before and after the compute).

Each `--tree NAME=PATH` is a `shared/` folder whose `forecastguard` is imported
(default: this checkout's; `NAME=PATH@THREADS` sets `check.PHASE_THREADS` where the tree
has it: a worktree of bf9cd97 up to its removal, for `health_compute_memory.json`); the rounds alternate the trees (old, new, old, new, ...),
so a load that changes during the run falls on both alike. CPU time, not wall time,
is the figure on a shared machine; the load average is recorded around every child.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 5, 30)
WINDOW_DAYS = 30


def build(n_products: int, reference_days: int, with_intervals: bool, varied: bool = False):
    """The synthetic window the check reads (seed 42, 1 % of products drifted, as
    `health_bench.py` fills its databases), with P10/P90 on the window's days; and
    (`varied`) the champion's holdout errors for the products it needs: (WindowData,
    holdout or None)."""
    from dataclasses import replace

    from forecastguard.health.window import history_days
    from tests.integration.health.synthetic import synthetic_window

    history = history_days(WINDOW_DAYS, reference_days or None)
    data = synthetic_window(
        n_products, AS_OF, WINDOW_DAYS, seed=42, drift_share=0.01, history=history
    )
    data = replace(data, reference_days=reference_days or None)
    holdout = None
    if varied:
        data, holdout = _varied(data)
    if not with_intervals:
        return data, holdout
    lower, upper = _intervals(data.predicted)
    in_window = data.day >= data.history_days
    return replace(
        data,
        lower=np.where(in_window, lower, np.nan),
        upper=np.where(in_window, upper, np.nan),
    ), holdout


def _varied(data):  # (WindowData) -> (WindowData, holdout)
    """The window made uneven, to compare code trees beyond the clean case: 15 % of the
    rows missing (missing days, NaN cells in the tests' matrices), 5 % of the products
    intermittent (four days in five without sales), 2 % constant (sales and forecasts:
    constant error periods), 2 % selling nothing with a forecast that changed in the
    window, 2 % without any reference day (the holdout errors are their reference), the
    rows in a shuffled order."""
    from dataclasses import replace

    rng = np.random.default_rng(7)
    n = len(data.products)
    kind = rng.choice(5, size=n, p=[0.89, 0.05, 0.02, 0.02, 0.02])
    row_kind = kind[data.codes]
    units, predicted = data.units.copy(), data.predicted.copy()
    sparse = (row_kind == 1) & (rng.random(len(units)) < 0.8)
    units[sparse] = 0.0
    units[row_kind == 2] = 5.0
    predicted[row_kind == 2] = 4.5
    units[row_kind == 3] = 0.0
    in_window = data.day >= data.history_days
    predicted[row_kind == 3] = np.where(in_window[row_kind == 3], 1.0, 0.5)
    keep = rng.random(len(units)) > 0.15
    keep &= ~((row_kind == 4) & ~in_window)
    order = rng.permutation(np.flatnonzero(keep))
    data = replace(
        data,
        codes=data.codes[order],
        day=data.day[order],
        units=units[order],
        predicted=predicted[order],
    )
    hold_codes = np.repeat(np.flatnonzero(kind == 4), 40)
    return data, (hold_codes, rng.normal(0.0, 2.0, len(hold_codes)))


def _intervals(point: np.ndarray, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(P10, P90) as `health_bench.intervals` serves them (not imported from there: it
    puts this checkout's shared/ first on sys.path, and the trees must stay apart)."""
    z90 = 1.2815515655446004
    scale = np.sqrt(point + (noise * point) ** 2)
    return np.maximum(0.0, point - z90 * scale), point + z90 * scale


def _status_mb(field: str) -> float | None:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def digest(result) -> str:  # result: HealthResult
    """A hash of every per-product column (values and NaN positions, bit for bit) and of
    the summary without its timing: equal digests, equal results."""
    h = hashlib.sha256()
    frame = result.products
    for name in frame.columns:
        h.update(name.encode())
        values = frame[name].to_numpy()
        if values.dtype.kind in "fiub":
            h.update(np.ascontiguousarray(values).tobytes())
        else:
            h.update(repr(values.tolist()).encode())
    volatile = {"duration_s", "check_id", "checked_at"}  # a stored check's id and times
    summary = {k: v for k, v in result.summary().items() if k not in volatile}
    h.update(json.dumps(summary, sort_keys=True, default=str).encode())
    return h.hexdigest()


def traced_peaks(data, holdout, params) -> dict[str, float]:  # (WindowData, ..., HealthParams)
    """The traced (tracemalloc) working-memory peak of the check's two steps, MB above
    what was allocated before each: `product_phase`, then `global_phase` on its rows."""
    import tracemalloc

    from forecastguard.health import check

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        part = check.product_phase(data, params, holdout)
        product_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        check.global_phase(part, params)
        global_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return {
        "traced_product_phase_mb": product_peak / 2**20,
        "traced_global_phase_mb": global_peak / 2**20,
    }


def child(
    n_products: int, reference_days: int, with_intervals: bool, varied: bool, repeats: int
) -> None:
    """Build the window, run `compute_health` 1 + `repeats` times (the first in a cold
    process), print the figures as JSON."""
    from forecastguard.health import check
    from forecastguard.health.check import HealthParams, compute_health

    threads = os.environ.get("FG_BENCH_PHASE_THREADS")
    if threads and hasattr(check, "PHASE_THREADS"):  # trees before it run one thread
        check.PHASE_THREADS = int(threads)
    data, holdout = build(n_products, reference_days, with_intervals, varied)
    params = HealthParams()
    cpu, wall = [], []
    rss_before = _status_mb("VmRSS")
    peak_reset = _reset_peak()
    for i in range(1 + repeats):
        c0, w0 = _cpu_s(), time.perf_counter()
        result = compute_health(data, params, holdout)
        cpu.append(_cpu_s() - c0)
        wall.append(time.perf_counter() - w0)
        if i == 0:
            first_peak = _status_mb("VmHWM") if peak_reset else None
    print(
        json.dumps(
            {
                "first_cpu_s": cpu[0],
                "repeat_cpu_s": statistics.median(cpu[1:]),
                "repeat_cpu_s_min": min(cpu[1:]),
                "first_wall_s": wall[0],
                "repeat_wall_s": statistics.median(wall[1:]),
                **traced_peaks(data, holdout, params),
                "rss_before_mb": rss_before,
                "first_peak_rss_mb": first_peak,
                "n_tested": result.n_tested,
                "drifted": int(result.products["drift"].sum()),
                "p_value": result.p_value,
                "digest": digest(result),
                "module": sys.modules["forecastguard"].__file__,
                "phase_threads": getattr(check, "PHASE_THREADS", 1),
            }
        )
    )


def service_child(db: str, reference_days: int, repeats: int) -> None:
    """`HealthService.run` 1 + `repeats` times in this process on a copy of the SQLite
    database `db` (filled by `health_bench.py --fill-only --sqlite-path`): each check's
    CPU and wall time, its compute's CPU and the peak RSS before and after the compute
    (VmHWM), and a hash of each result; printed as JSON."""
    import shutil
    import tempfile

    from forecastguard.config import Settings
    from forecastguard.db.engine import make_engine
    from forecastguard.health import service as service_module

    tmp = tempfile.mkdtemp()
    path = Path(tmp) / "check.db"
    shutil.copy(db, path)  # each process starts from the same stored state
    engine = make_engine(f"sqlite:///{path}")
    settings = Settings.from_env(
        {"REFERENCE_DAYS": str(reference_days)}, metrics_sink=str(Path(tmp) / "m.jsonl")
    )
    service = service_module.HealthService(settings, engine=engine)
    compute = service_module.compute_health
    steps: list[dict] = []

    def timed_compute(*args, **kwargs):  # the service's compute_health, measured
        step = {"peak_before_compute_mb": _status_mb("VmHWM")}
        start = _cpu_s()
        result = compute(*args, **kwargs)
        step["compute_cpu_s"] = _cpu_s() - start
        step["peak_after_compute_mb"] = _status_mb("VmHWM")
        steps.append(step)
        return result

    service_module.compute_health = timed_compute
    checks = []
    for _ in range(1 + repeats):
        c0, w0 = _cpu_s(), time.perf_counter()
        result = service.run(AS_OF, WINDOW_DAYS)
        checks.append(
            {
                "cpu_s": _cpu_s() - c0,
                "wall_s": time.perf_counter() - w0,
                "peak_after_mb": _status_mb("VmHWM"),
                "digest": digest(result),
                **steps[-1],
            }
        )
    engine.dispose()
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"checks": checks, "peak_rss_mb": _status_mb("VmHWM")}))


def run_child(shared: str, args: argparse.Namespace) -> dict:
    """One fresh process on the code of `shared` (`PATH@THREADS`: with that many phase
    threads); its figures and the load around it."""
    shared, _, threads = shared.partition("@")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([shared, str(ROOT)])}
    if threads:
        env["FG_BENCH_PHASE_THREADS"] = threads
    load_before = os.getloadavg()[0]
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--products",
            str(args.products),
            "--reference-days",
            str(args.reference_days),
            *(["--intervals"] if args.intervals else []),
            *(["--varied"] if args.varied else []),
            *(["--service-db", args.service_db] if args.service_db else []),
            "--repeats",
            str(args.repeats),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    run = json.loads(out.stdout.strip().splitlines()[-1])
    run["load_before"], run["load_after"] = load_before, os.getloadavg()[0]
    return run


def service_rounds(trees: dict[str, str], args: argparse.Namespace) -> None:
    """The `--service-db` rounds: the trees alternated, each check's figures printed."""
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for i in range(args.rounds):
        for name, shared in trees.items():
            run = run_child(shared, args)
            runs[name].append(run)
            text = "; ".join(
                f"CPU {c['cpu_s']:.2f} s (compute {c['compute_cpu_s']:.2f}), peak "
                f"{c['peak_before_compute_mb']:.0f} -> {c['peak_after_compute_mb']:.0f} MB"
                for c in run["checks"]
            )
            print(f"round {i + 1} {name:6s} {text}, load {run['load_before']:.2f}", flush=True)
    digests = {tuple(c["digest"] for c in r["checks"]) for rs in runs.values() for r in rs}
    report = {
        "service_db": args.service_db,
        "reference_days": args.reference_days,
        "rounds": args.rounds,
        "trees": {
            name: {
                "path": trees[name],
                "first_cpu_s_median": statistics.median(r["checks"][0]["cpu_s"] for r in rs),
                "first_compute_cpu_s_median": statistics.median(
                    r["checks"][0]["compute_cpu_s"] for r in rs
                ),
                "repeat_cpu_s_median": statistics.median(
                    c["cpu_s"] for r in rs for c in r["checks"][1:]
                ),
                "peak_rss_mb_max": max(r["peak_rss_mb"] for r in rs),
                "runs": rs,
            }
            for name, rs in runs.items()
        },
        "same_result": len(digests) == 1,
    }
    print(f"same results in every tree and round: {report['same_result']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    """Run the rounds, print and optionally save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--reference-days", type=int, default=90)
    parser.add_argument("--intervals", action="store_true")
    parser.add_argument(
        "--varied",
        action="store_true",
        help="missing days, intermittent, constant and zero-sales products, a holdout",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="warm checks a process")
    parser.add_argument(
        "--tree", action="append", default=[], help="NAME=PATH of a shared/ folder (repeatable)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--service-db",
        help="instead: HealthService.run on a copy of this SQLite database (filled by "
        "health_bench.py --fill-only --sqlite-path), read and store included",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.service_db:
            service_child(args.service_db, args.reference_days, args.repeats)
        else:
            child(args.products, args.reference_days, args.intervals, args.varied, args.repeats)
        return
    trees = dict(t.split("=", 1) for t in args.tree) or {"new": str(ROOT / "shared")}
    if args.service_db:
        service_rounds(trees, args)
        return
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for i in range(args.rounds):
        for name, shared in trees.items():
            run = run_child(shared, args)
            runs[name].append(run)
            print(
                f"round {i + 1} {name:6s} first CPU {run['first_cpu_s']:.2f} s, repeat CPU "
                f"{run['repeat_cpu_s']:.2f} s (wall {run['first_wall_s']:.2f} / "
                f"{run['repeat_wall_s']:.2f} s, load {run['load_before']:.2f}-"
                f"{run['load_after']:.2f}; RSS {run['rss_before_mb']:.0f} -> peak "
                f"{run['first_peak_rss_mb'] or float('nan'):.0f} MB; traced "
                f"{run['traced_product_phase_mb']:.0f} + {run['traced_global_phase_mb']:.0f} MB"
                f"), digest {run['digest'][:12]}",
                flush=True,
            )
    report = {
        "products": args.products,
        "reference_days": args.reference_days,
        "intervals": args.intervals,
        "varied": args.varied,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "trees": {
            name: {
                "path": trees[name],
                "first_cpu_s_median": statistics.median(r["first_cpu_s"] for r in rs),
                "repeat_cpu_s_median": statistics.median(r["repeat_cpu_s"] for r in rs),
                "repeat_cpu_s_min": min(r["repeat_cpu_s_min"] for r in rs),
                "first_peak_rss_mb_max": max(r["first_peak_rss_mb"] or 0 for r in rs),
                "traced_product_phase_mb": max(r["traced_product_phase_mb"] for r in rs),
                "traced_global_phase_mb": max(r["traced_global_phase_mb"] for r in rs),
                "digests": sorted({r["digest"] for r in rs}),
                "runs": rs,
            }
            for name, rs in runs.items()
        },
    }
    digests = {d for t in report["trees"].values() for d in t["digests"]}
    report["same_result"] = len(digests) == 1
    print(f"same result in every tree and round: {report['same_result']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

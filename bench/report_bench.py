"""Benchmark of the health check's HTML report (issue 17): size and render time for a
10,000-product check, and what writing it adds to the whole check.

Each figure comes from a fresh process (a cold function instance pays for importing
Jinja2 and compiling the templates on its first report):

- render: `render_check_report` of a 10,000-product check (30-day window, 1 % drifted),
  first in the process and repeated; the page's size in bytes;
- check: `HealthService.run` on SQLite with the same data, with ARTIFACT_URI set (the
  report is written) and without, first check of a process and a repeat;
- matplotlib, for comparison (why the charts are hand-made SVG): its import and ten
  two-panel figures saved as SVG, the work the report's product panels would need.

    .venv/bin/python bench/report_bench.py [--products 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

AS_OF = date(2026, 5, 30)

RENDER = """
import json, sys, time
sys.path[:0] = {paths!r}
from datetime import date
from tests.integration.health.synthetic import synthetic_window
from forecastguard.health.check import HealthParams, compute_health
data = synthetic_window({n}, date(2026, 5, 30), 30, seed=42, drift_share=0.01)
result = compute_health(data, HealthParams())
result.check_id = "bench"
t0, c0 = time.perf_counter(), time.process_time()
from forecastguard.report.check_page import render_check_report
html = render_check_report(result, data)
first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
t0, c0 = time.perf_counter(), time.process_time()
html = render_check_report(result, data)
repeat, repeat_cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({{"first_s": first, "repeat_s": repeat, "first_cpu_s": first_cpu,
                  "repeat_cpu_s": repeat_cpu, "bytes": len(html.encode())}}))
"""

CHECK = """
import json, sys, time
sys.path[:0] = {paths!r}
from datetime import date
from forecastguard.config import Settings
from forecastguard.db.engine import make_engine
from forecastguard.health.service import HealthService
settings = Settings.from_env({{}}, database_url={url!r}, artifact_uri={artifacts!r} or None)
service = HealthService(settings, engine=make_engine({url!r}))
times, cpu = [], []
for _ in range(2):
    t0, c0 = time.perf_counter(), time.process_time()
    result = service.run(date(2026, 5, 30), 30)
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
print(json.dumps({{"first_s": times[0], "repeat_s": times[1], "first_cpu_s": cpu[0],
                  "repeat_cpu_s": cpu[1],
                  "report": result.outputs.get("report_uri") is not None}}))
"""

MATPLOTLIB = """
import io, json, time
t0 = time.perf_counter()
import matplotlib
matplotlib.use("Agg")
from matplotlib.figure import Figure
import numpy as np
imported = time.perf_counter() - t0
matplotlib.rcParams["svg.fonttype"] = "none"
rng = np.random.default_rng(0)
t0 = time.perf_counter()
size = 0
for _ in range(10):
    fig = Figure(figsize=(11, 2.6))
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[3, 2])
    x = np.arange(60)
    ax1.plot(x, rng.random(60)); ax1.plot(x, rng.random(60), "--"); ax1.axvspan(30, 60, alpha=.1)
    ax1.set_title("actual vs forecast"); ax2.hist([rng.normal(size=30), rng.normal(size=30)])
    buf = io.StringIO(); fig.savefig(buf, format="svg"); size += len(buf.getvalue())
print(json.dumps({"import_s": imported, "ten_figures_s": time.perf_counter() - t0,
                  "bytes": size}))
"""


def _child(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fill(url: str, n: int) -> None:
    from bench.health_bench import fill  # the same data as the health check's benchmark

    fill(url, n)


def _median(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows]
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    """Run the benchmark and print the figures (JSON lines, then a summary)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    paths = [str(ROOT / "shared"), str(ROOT)]
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    renders = [_child(RENDER.format(paths=paths, n=args.products)) for _ in range(args.repeats)]
    for r in renders:
        print(json.dumps({"render": r}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        _fill(url, args.products)
        artifacts = Path(tmp, "artifacts").as_uri()
        with_report, without = [], []
        for _ in range(args.repeats):
            with_report.append(_child(CHECK.format(paths=paths, url=url, artifacts=artifacts)))
            without.append(_child(CHECK.format(paths=paths, url=url, artifacts="")))
            print(json.dumps({"with": with_report[-1], "without": without[-1]}), flush=True)
    mpl = [_child(MATPLOTLIB) for _ in range(args.repeats)]
    for m in mpl:
        print(json.dumps({"matplotlib": m}), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        f"report of {args.products:,} products: {statistics.median(r['bytes'] for r in renders):,.0f}"
        f" bytes; render first {_median(renders, 'first_s')}, repeat {_median(renders, 'repeat_s')}"
    )
    print(
        f"check on SQLite with the report: first {_median(with_report, 'first_s')}, repeat "
        f"{_median(with_report, 'repeat_s')}; without: first {_median(without, 'first_s')}, "
        f"repeat {_median(without, 'repeat_s')}"
    )
    print(
        f"CPU of the check with the report: first {_median(with_report, 'first_cpu_s')}, "
        f"repeat {_median(with_report, 'repeat_cpu_s')}; without: first "
        f"{_median(without, 'first_cpu_s')}, repeat {_median(without, 'repeat_cpu_s')}; "
        f"CPU of the render: first {_median(renders, 'first_cpu_s')}, repeat "
        f"{_median(renders, 'repeat_cpu_s')}"
    )
    print(
        f"matplotlib: import {_median(mpl, 'import_s')}, ten two-panel SVG figures "
        f"{_median(mpl, 'ten_figures_s')}"
    )


if __name__ == "__main__":
    main()

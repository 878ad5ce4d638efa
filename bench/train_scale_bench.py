"""The trainer at catalogue scale: time, CPU, peak memory per task, accuracy (issue 26).

A synthetic catalogue (`forecastguard.synth.sales.generate_sales`, the generator behind
`forecastguard synth`) of `--products` products x `--years` years goes into a fresh
SQLite database; the trainer then runs with its defaults (`python -m trainer --mode
train`: Optuna's default trials and time budget, `TrainConfig()`), partitioned into
hash partitions of `--partition-size` products, as `--tasks` local task processes —
as the trainer's own local launcher starts them (`CLOUD_RUN_EXECUTION`,
`CLOUD_RUN_TASK_INDEX`, `CLOUD_RUN_TASK_COUNT`; `forecastguard.launcher.LocalLauncher`).

Measured per task (`os.wait4` of the task's process: its own resource usage, not an
estimate): wall time, CPU time (user + sys) and peak RSS (`ru_maxrss`); per stage, the
wall seconds of the trainer's `stage ...` log lines (summed over partitions), and the
load average while the run lasted.

Accuracy, out of sample: the days after the catalogue's last day (`HORIZON`, 28) are
generated but never written as sales (their promotion days are: planned promotions
are known in advance). After the run, the forecasts the trainer wrote for them (the
`predictions` table, by whatever serves each product) are scored against them: mean
over products of RMSE / the one-day naive scale of the product's history (RMSSE), beside
seasonal naive (the history's last 7 days repeated) on the same days. The trainer's own
test-window figure (metrics.json) is reported too.

`--compare-one-model` trains the same catalogue again as one partition (one model,
one task) and scores it the same way. Results: JSON at `--out` (default
`bench/results/train_scale_<products>.json`). Progress lines while it runs.

    nice -n 10 .venv/bin/python bench/train_scale_bench.py --products 1000 --years 3 \
        --tasks 2 --partition-size 250 --compare-one-model
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT / "jobs" / "trainer")]

HORIZON = 28  # days after the catalogue's end that score the served forecasts
START = pd.Timestamp("2023-01-01")
PROGRESS_S = 30.0  # seconds between progress lines
SAMPLE_S = 2.0  # seconds between samples of the tasks' CPU time and peak RSS
STAGE = re.compile(r"^stage ")


@dataclass
class Task:
    """One local task process of the trainer job and what `os.wait4` said of it."""

    index: int
    process: subprocess.Popen
    log_path: Path
    started: float
    ended: float | None = None
    returncode: int | None = None
    usage: dict[str, float] = field(default_factory=dict)
    # (unix time, CPU seconds so far, peak RSS MB so far), sampled while it runs
    timeline: list[tuple[float, float, float]] = field(default_factory=list)
    # (unix time, current RSS MB), sampled with the timeline: peaks per stage/partition
    rss: list[tuple[float, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Wall, CPU and peak RSS of the finished task."""
        return {
            "task": self.index,
            "returncode": self.returncode,
            "wall_s": round((self.ended or time.monotonic()) - self.started, 1),
            **self.usage,
        }


def catalogue(products: int, years: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, future): `years` x 365 days of sales of `products` products, and the
    `HORIZON` days after them (scored, never written as sales)."""
    from forecastguard.synth.sales import generate_sales

    days = round(years * 365)
    if days < 2 * HORIZON:
        raise SystemExit(f"--years {years}: fewer than {2 * HORIZON} days")
    end = START + pd.Timedelta(days=days - 1)
    frame = generate_sales(products, START, end + pd.Timedelta(days=HORIZON), seed)
    frame = frame[["product_id", "date", "units_sold", "on_promotion"]]
    return frame[frame["date"] <= end].reset_index(drop=True), frame[frame["date"] > end]


def write_catalogue(url: str, history: pd.DataFrame, future: pd.DataFrame) -> None:
    """A migrated SQLite database holding the history's sales and promotion days and the
    future's promotion days (known in advance). Written with `sqlite3.executemany` in one
    transaction: `forecastguard.synth.output.write_database` upserts through SQLAlchemy,
    minutes for a million rows; the rows are the same."""
    import sqlite3

    from forecastguard.db.engine import make_engine
    from forecastguard.db.migrate import upgrade

    if not url.startswith("sqlite:///"):
        raise SystemExit(f"the bench writes SQLite only, got {url!r}")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    days = history["date"].dt.strftime("%Y-%m-%d").to_numpy()
    both = pd.concat([history, future])
    planned = both[both["on_promotion"].astype(bool)]
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.executemany(
            "INSERT INTO sales (product_id, sale_date, units_sold) VALUES (?, ?, ?)",
            zip(
                history["product_id"].astype(str),
                days,
                history["units_sold"].astype(float),
                strict=True,
            ),
        )
        conn.executemany(
            "INSERT INTO promotions (product_id, promo_date) VALUES (?, ?)",
            zip(
                planned["product_id"].astype(str),
                planned["date"].dt.strftime("%Y-%m-%d"),
                strict=True,
            ),
        )


def _usage(status: int, rusage: Any) -> dict[str, float]:
    cpu = rusage.ru_utime + rusage.ru_stime
    return {
        "cpu_s": round(cpu, 1),
        "user_s": round(rusage.ru_utime, 1),
        "sys_s": round(rusage.ru_stime, 1),
        "peak_rss_mb": round(rusage.ru_maxrss / 1024, 1),  # Linux: kilobytes
        "exit_status": os.waitstatus_to_exitcode(status),
    }


def start_tasks(
    count: int,
    env: dict[str, str],
    log_dir: Path,
    command: Sequence[str],
    only: Sequence[int] | None = None,
) -> list[Task]:
    """`count` trainer processes sharing one execution, as the local launcher starts them
    (`only`: start just these task indices of the `count`)."""
    execution = f"scale-{uuid.uuid4().hex[:8]}"
    tasks = []
    for index in range(count) if only is None else only:
        log_path = log_dir / f"task{index}.log"
        task_env = {
            **env,
            "CLOUD_RUN_EXECUTION": execution,
            "CLOUD_RUN_TASK_INDEX": str(index),
            "CLOUD_RUN_TASK_COUNT": str(count),
        }
        with open(log_path, "ab") as out:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=task_env,
                start_new_session=True,
            )
        tasks.append(Task(index, process, log_path, time.monotonic()))
    return tasks


def _last_stage(path: Path) -> str:
    """The message of the last `stage` line in a task's log (progress)."""
    last = ""
    try:
        with open(path, errors="replace") as fh:
            for line in fh:
                if '"stage' in line:
                    try:
                        doc = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if STAGE.match(str(doc.get("message", ""))):
                        part = f" {doc['partition']}" if "partition" in doc else ""
                        last = f"{doc['message']}{part} ({doc.get('duration_s', '?')} s)"
    except OSError:
        return ""
    return last


def live_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, peak RSS so far in MB) of a running process, from /proc
    (0, 0 where /proc is not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        status = Path(f"/proc/{pid}/status").read_text()
        hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    except (OSError, StopIteration, IndexError, ValueError):
        return 0.0, 0.0
    return cpu, hwm / 1024


def live_rss(pid: int) -> float:
    """Current RSS in MB of a running process (`VmRSS`; 0 where /proc is not readable)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        return (
            next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS")) / 1024
        )
    except (OSError, StopIteration, IndexError, ValueError):
        return 0.0


def _task_line(task: Task) -> str:
    cpu, peak = live_usage(task.process.pid)
    return f"t{task.index} [{cpu:.0f} cpu s, {peak:.0f} MB]: {_last_stage(task.log_path) or '-'}"


def wait_tasks(tasks: list[Task], label: str, progress_s: float = PROGRESS_S) -> list[float]:
    """Reap every task with `os.wait4` (its own rusage), printing progress; returns the
    load averages sampled meanwhile."""
    loads: list[float] = []
    pending = {t.process.pid: t for t in tasks}
    t0, last_print = time.monotonic(), 0.0
    while pending:
        for pid, task in list(pending.items()):
            done, status, rusage = os.wait4(pid, os.WNOHANG)
            if done:
                task.ended = time.monotonic()
                task.usage = _usage(status, rusage)
                task.returncode = task.usage["exit_status"]
                task.process.returncode = task.returncode  # reaped here, not by Popen
                del pending[pid]
        for task in pending.values():
            cpu, peak = live_usage(task.process.pid)
            if cpu:
                task.timeline.append((time.time(), cpu, peak))
                task.rss.append((time.time(), live_rss(pid)))
        now = time.monotonic()
        if now - last_print >= progress_s:
            loads.append(os.getloadavg()[0])
            stages = "; ".join(_task_line(t) for t in tasks if t.ended is None)
            print(
                f"[{label}] {now - t0:7.0f} s  running {len(pending)}/{len(tasks)}  "
                f"load {loads[-1]:.2f}  {stages}",
                flush=True,
            )
            last_print = now
        if pending:
            time.sleep(SAMPLE_S)
    return loads


def stage_cpu(path: Path, timeline: Sequence[tuple[float, float, float]]) -> dict[str, float]:
    """CPU seconds of a task by `stage` (summed), from its CPU timeline interpolated at
    each stage's start and end (the log line's time and `duration_s`). Stages nest (a
    partition holds its training stages): the sums overlap. Stages outside the sampled
    time are left out."""
    if len(timeline) < 2:
        return {}
    when = np.array([t for t, _, _ in timeline])
    cpu = np.array([c for _, c, _ in timeline])
    totals: dict[str, float] = defaultdict(float)
    for name, doc in _stage_lines(path):
        end = pd.Timestamp(doc["time"]).timestamp()
        start = end - float(doc.get("duration_s") or 0.0)
        if start < when[0] - SAMPLE_S or end > when[-1] + SAMPLE_S:
            continue  # not covered by the samples: unknown, not zero
        totals[name] += float(np.interp(end, when, cpu) - np.interp(start, when, cpu))
    return {k: round(v, 1) for k, v in sorted(totals.items())}


def stage_rss(path: Path, rss: Sequence[tuple[float, float]]) -> list[dict[str, Any]]:
    """Each `stage ...` of a task in log order with the highest sampled current RSS while
    it ran and the RSS at its end (MB; samples every `SAMPLE_S`): the peak of each
    partition, and whether memory stays behind from one partition to the next."""
    if not rss:
        return []
    when = np.array([t for t, _ in rss])
    mb = np.array([m for _, m in rss])
    out = []
    for name, doc in _stage_lines(path):
        end = pd.Timestamp(doc["time"]).timestamp()
        start = end - float(doc.get("duration_s") or 0.0)
        inside = mb[(when >= start) & (when <= end + SAMPLE_S)]
        if not len(inside):
            continue
        row = {"stage": name, "peak_rss_mb": round(float(inside.max()), 1)}
        row["rss_at_end_mb"] = round(float(np.interp(end, when, mb)), 1)
        if doc.get("partition"):
            row["partition"] = doc["partition"]
        out.append(row)
    return out


def _stage_lines(path: Path) -> Iterator[tuple[str, dict]]:
    """(stage name, log record) of each of the trainer's `stage ...` lines in a JSON log;
    other and unparsable lines are skipped."""
    with open(path, errors="replace") as fh:
        for line in fh:
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict) and STAGE.match(str(doc.get("message", ""))):
                yield str(doc.get("stage") or doc["message"].split(" ", 1)[1]), doc


def stage_seconds(paths: list[Path]) -> dict[str, dict[str, float]]:
    """Per task log: wall seconds summed by `stage` (the trainer's `stage ...` lines)."""
    out: dict[str, dict[str, float]] = {}
    for path in paths:
        totals: dict[str, float] = defaultdict(float)
        for name, doc in _stage_lines(path):
            totals[name] += float(doc.get("duration_s") or 0.0)
        out[path.stem] = {k: round(v, 1) for k, v in sorted(totals.items())}
    return out


def score(predictions: pd.DataFrame, history: pd.DataFrame, future: pd.DataFrame) -> dict[str, Any]:
    """Mean RMSSE over products of the forecasts and of seasonal naive on the future days.

    `predictions`: product_id, target_date, predicted_units (what serves each product).
    A product without a forecast for every future day is counted, not scored.
    """
    from forecastguard.scoring import naive_scale, rmsse

    wide = history.pivot(index="product_id", columns="date", values="units_sold").sort_index()
    actual = future.pivot(index="product_id", columns="date", values="units_sold")
    actual = actual.reindex(wide.index)
    scale = naive_scale(wide.to_numpy(dtype=float))
    week = wide.to_numpy(dtype=float)[:, -7:]
    seasonal = np.tile(week, (1, int(np.ceil(actual.shape[1] / 7))))[:, : actual.shape[1]]
    pred = predictions.assign(target_date=pd.to_datetime(predictions["target_date"]))
    pred = pred.pivot(index="product_id", columns="target_date", values="predicted_units")
    pred = pred.reindex(index=actual.index, columns=actual.columns)
    covered = ~pred.isna().any(axis=1).to_numpy()
    a = actual.to_numpy(dtype=float)
    model = rmsse(np.sqrt(np.mean((pred.to_numpy(dtype=float) - a) ** 2, axis=1)), scale)
    naive = rmsse(np.sqrt(np.mean((seasonal - a) ** 2, axis=1)), scale)
    ok = covered & np.isfinite(model) & np.isfinite(naive)
    out: dict[str, Any] = {
        "products_scored": int(ok.sum()),
        "products_without_forecast": int((~covered).sum()),
        "served_mean_rmsse": None,
        "seasonal_naive_mean_rmsse": None,
        "improvement_vs_seasonal_naive": None,
    }
    if ok.any():
        m, n = float(np.mean(model[ok])), float(np.mean(naive[ok]))
        out["served_mean_rmsse"], out["seasonal_naive_mean_rmsse"] = round(m, 4), round(n, 4)
        out["improvement_vs_seasonal_naive"] = round(1 - m / n, 4) if n > 0 else None
    return out


def read_outcome(url: str, artifacts: Path) -> dict[str, Any]:
    """The champion after the run, its forecasts and the run's own test figures."""
    import sqlalchemy as sa

    from forecastguard.db.engine import make_engine
    from forecastguard.db.schema import predictions
    from forecastguard.storage import open_store
    from trainer.serve.artifacts import read_champion

    store = open_store(artifacts.as_uri())
    pointer = read_champion(store)
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                predictions.c.product_id,
                predictions.c.target_date,
                predictions.c.predicted_units,
                predictions.c.model_version,
            )
        ).all()
    engine.dispose()
    frame = pd.DataFrame(
        rows, columns=["product_id", "target_date", "predicted_units", "model_version"]
    )
    out: dict[str, Any] = {
        "champion": None if pointer is None else {"kind": pointer.kind, "run": pointer.run_id},
        "model_versions_in_predictions": sorted(frame["model_version"].unique().tolist()),
        "predictions": frame,
    }
    runs = sorted(p.parent.name for p in (artifacts / "runs").glob("*/metrics.json"))
    top = [r for r in runs if not re.search(r"-p\d{4}$", r)]
    if top:
        metrics = json.loads((artifacts / "runs" / top[0] / "metrics.json").read_text())
        test = {"served_mean_rmsse": metrics.get("model", {}).get("rmsse")}
        base = metrics.get("baselines", {}).get("seasonal_naive", {})
        if base:
            test["seasonal_naive_mean_rmsse"] = base.get("rmsse")
        if "partitions" in metrics:
            test["partitions"] = len(metrics["partitions"])
            test["changed_partitions"] = len(metrics.get("changed_partitions", []))
            test["promotion_modes"] = metrics.get("promotion_modes")
        else:
            test["served_kind"] = metrics.get("kind") or metrics.get("served_kind")
            test["decision"] = metrics.get("decision", {}).get("reason")
        out["trainer_test_window"] = test
    parts = [r for r in runs if re.search(r"-p\d{4}$", r)]
    kinds: dict[str, int] = defaultdict(int)
    for r in parts:
        m = json.loads((artifacts / "runs" / r / "metrics.json").read_text())
        kinds[str(m.get("served_kind_chosen_on_validation"))] += 1
    out["partition_runs"] = len(parts)
    if parts:
        out["partition_kinds_chosen_on_validation"] = dict(kinds)
    return out


def run_once(
    label: str,
    history: pd.DataFrame,
    future: pd.DataFrame,
    *,
    tasks: int,
    partition_size: int,
    extra_env: dict[str, str],
    workdir: Path,
    only: Sequence[int] | None = None,
    champion: Path | None = None,
) -> dict[str, Any]:
    """One training run of the catalogue in `tasks` local task processes; its figures.

    `champion`: instead, copy this artifact folder (a trained champion's) and run
    `--mode forecast` in `tasks` task processes: the final forecast alone. With a
    partitioned champion each task forecasts its partitions (i mod `tasks`) one at a
    time, so a task's memory follows a partition (before, task 0 forecast every product
    at once: its memory followed the catalogue); new products fall in the champion's
    partitions by hash.

    `only`: start just these task indices (a subset of the job's partitions: the gather
    cannot finish, task 0 fails after TRAIN_GATHER_TIMEOUT_S; per-task figures only)."""
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir / 'fg.db'}"
    artifacts = workdir / "artifacts"
    if champion is not None:
        import shutil

        shutil.copytree(champion, artifacts, dirs_exist_ok=True)
    artifacts.mkdir(exist_ok=True)
    write_catalogue(url, history, future)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("RUN_ID",)},
        "DATABASE_URL": url,
        "ARTIFACT_URI": artifacts.as_uri(),
        "TRAIN_PARTITION_SIZE": str(partition_size),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "LOG_LEVEL": "INFO",
        **extra_env,
    }
    for name in ("SMTP_HOST", "SMTP_USER", "SMTP_PASSWORD"):
        env.pop(name, None)
    mode = "train" if champion is None else "forecast"
    command = (sys.executable, "-m", "trainer", "--mode", mode)
    print(f"[{label}] starting {tasks} task(s), partition size {partition_size}", flush=True)
    loads_start = list(os.getloadavg())
    t0 = time.monotonic()
    running = start_tasks(tasks, env, workdir, command, only)
    loads = wait_tasks(running, label)
    wall = time.monotonic() - t0
    per_task = [t.summary() for t in running]
    failed = [t for t in per_task if t["returncode"] != 0]
    result: dict[str, Any] = {
        "tasks": tasks,
        "tasks_started": [t.index for t in running],
        "partition_size": partition_size,
        "wall_s": round(wall, 1),
        "cpu_s_total": round(sum(t["cpu_s"] for t in per_task), 1),
        "peak_rss_mb_max_task": max(t["peak_rss_mb"] for t in per_task),
        "per_task": per_task,
        "workdir": str(workdir),
        "stage_wall_s": stage_seconds([t.log_path for t in running]),
        "stage_cpu_s": {t.log_path.stem: stage_cpu(t.log_path, t.timeline) for t in running},
        "stage_rss_mb": {t.log_path.stem: stage_rss(t.log_path, t.rss) for t in running},
        "rss_timeline_mb": {  # (seconds from start, current RSS MB) every ~30 s
            t.log_path.stem: [
                (round(w - t.rss[0][0]), round(m)) for w, m in t.rss[:: max(1, int(30 / SAMPLE_S))]
            ]
            for t in running
            if t.rss
        },
        "load_avg": {
            "start": [round(x, 2) for x in loads_start],
            "mean_1min_during": round(float(np.mean(loads)), 2) if loads else None,
            "end": [round(x, 2) for x in os.getloadavg()],
        },
    }
    if champion is not None:
        result["forecast_only"] = f"--mode forecast with the champion of {champion}"
        return result
    if only is not None:
        result["subset"] = (
            f"only task(s) {list(only)} of {tasks} started: their partitions trained, "
            "the gather cannot finish (no champion, no forecasts)"
        )
        print(f"[{label}] subset done in {wall:.0f} s", flush=True)
        return result
    if failed:
        result["failed_tasks"] = failed
        result["log_tail"] = running[0].log_path.read_text(errors="replace")[-3000:]
        print(f"[{label}] FAILED: {failed}", flush=True)
        return result
    outcome = read_outcome(url, artifacts)
    frame = outcome.pop("predictions")
    result.update(outcome)
    result["held_out_next_days"] = score(frame, history, future) if len(frame) else None
    print(f"[{label}] done in {wall:.0f} s: {json.dumps(result['held_out_next_days'])}", flush=True)
    return result


# Cloud Run Jobs, Tier 1 regions, instance-based billing ("Services with CPU always
# allocated / Jobs" row of https://cloud.google.com/run/pricing; read 2026-12-06 from the
# stored copy of that page: $0.00001800 per vCPU-second; the memory price of the same row,
# $0.00000200 per GiB-second, from public repositories quoting the table). Free tier ignored.
PRICE_VCPU_S = 0.000018
PRICE_GIB_S = 0.000002
TARGETS = (  # catalogue, partition size, tasks, vCPU and GiB per task, goal in minutes
    {"name": "10k here", "products": 10_000, "tasks": 1, "vcpu": 2, "gib": 24, "goal_min": 60},
    {"name": "30k (M5)", "products": 30_490, "tasks": 16, "vcpu": 8, "gib": 32, "goal_min": 60},
    {"name": "1M", "products": 1_000_000, "tasks": 500, "vcpu": 8, "gib": 32, "goal_min": 120},
)


def partition_costs(result: dict[str, Any]) -> dict[str, Any]:
    """From one partitioned run: CPU seconds of each partition (products, cpu), task 0's
    other CPU (start-up, tuning, gather) and the CPU of its final forecast per product."""
    run = result["partitioned"]
    points, overhead, forecast = [], None, None
    for task in run["per_task"]:
        name = f"task{task['task']}"
        log_path = Path(run.get("workdir", "")) / f"{name}.log"
        sizes = []
        if log_path.exists():
            for line in log_path.read_text(errors="replace").splitlines():
                if '"stage partition"' in line:
                    sizes.append(int(json.loads(line)["products"]))
        cpu = run["stage_cpu_s"].get(name, {})
        if cpu.get("forecast") is not None:  # every task forecasts its own partitions now
            forecast = (forecast or 0.0) + cpu["forecast"]
        if task["task"] == 0:
            part = cpu.get("partition", 0.0)
            overhead = task["cpu_s"] - part - cpu.get("forecast", 0.0)
            if sizes and part:
                points.append((float(np.mean(sizes)), part / len(sizes)))
        elif sizes:  # its whole CPU is its partitions, its forecast and its start-up
            own = task["cpu_s"] - cpu.get("forecast", 0.0)
            points.append((float(np.mean(sizes)), own / len(sizes)))
    return {
        "partition_points": points,
        "task0_overhead_cpu_s": overhead,
        "forecast_cpu_s_per_product": None if forecast is None else forecast / result["products"],
    }


def project(
    points: list[tuple[float, float]],
    overhead_cpu_s: float,
    forecast_cpu_per_product: float,
    partition_size: int,
    speedup: float,
    targets: Sequence[dict[str, Any]] = TARGETS,
) -> list[dict[str, Any]]:
    """Minutes and cost of each target catalogue, on paper.

    A partition of P products costs `a + b * P` CPU seconds (a line through the measured
    (products, CPU) points, flat at the largest if it falls; one point: proportional); every
    task adds `overhead_cpu_s` (start-up and the shared tuning: task 0 tunes, the others
    wait for it) and the forecast of its own partitions' products (as the trainer does
    since each task forecasts its partitions); a task's wall time is its CPU time /
    `speedup` (the effective parallelism of a task). Billing: every task for its wall
    time. `minutes_if_task0_forecast_everything` is the code before that change (task 0
    forecast every product after the gather)."""
    xs, ys = np.array([p for p, _ in points]), np.array([c for _, c in points])
    if len(set(xs.tolist())) >= 2:
        b, a = np.polyfit(xs, ys, 1)
        if b < 0:  # noise (the runs' rounds differ): flat at the largest, not falling
            a, b = float(ys.max()), 0.0
    else:
        a, b = 0.0, float(ys.mean() / xs.mean())
    per_partition = a + b * partition_size
    out = []
    for t in targets:
        parts = math.ceil(t["products"] / partition_size)
        tasks = min(t["tasks"], parts)  # a task without a partition is not started
        per_task = math.ceil(parts / tasks)
        s = min(speedup, t["vcpu"])
        # each task forecasts its own partitions' products after the gather's decision
        own = forecast_cpu_per_product * min(per_task * partition_size, t["products"])
        wall = (overhead_cpu_s + per_task * per_partition + own) / s
        billed_s = tasks * wall
        # before: task 0 forecast every product of the catalogue after the gather
        forecast_all = forecast_cpu_per_product * t["products"]
        wall_all = (overhead_cpu_s + per_task * per_partition + forecast_all) / s
        billed_all = wall_all + (tasks - 1) * (overhead_cpu_s + per_task * per_partition) / s
        rate = t["vcpu"] * PRICE_VCPU_S + t["gib"] * PRICE_GIB_S
        out.append(
            {
                **t,
                "partition_size": partition_size,
                "partitions": parts,
                "tasks_started": tasks,
                "partitions_per_task": per_task,
                "cpu_s_per_partition": round(per_partition, 1),
                "forecast_cpu_s_a_task": round(own, 1),
                "speedup_assumed": s,
                "minutes": round(wall / 60, 1),
                "meets_goal": wall / 60 <= t["goal_min"],
                "cost_usd": round(billed_s * rate, 2),
                "minutes_if_task0_forecast_everything": round(wall_all / 60, 1),
                "cost_usd_if_task0_forecast_everything": round(billed_all * rate, 2),
            }
        )
    return out


SAMPLE_LINE = re.compile(
    r"^(\d+) load=(\S+) pid=(\d+) cpu_ticks=(\d+) hwm_kb=(\d+) ARTIFACT_URI=(\S+) "
    r"CLOUD_RUN_TASK_INDEX=(\d+)"
)


def partial_result(workdir: Path, sampler_log: Path, products: int) -> dict[str, Any]:
    """The figures of a run in `workdir` that was stopped before it ended (or ran
    without the bench's own sampling): per task its CPU time and peak RSS so far and CPU
    per stage, from the lines `bench/proc_sample.sh` wrote, and the stages its log
    recorded (wall). Stages still running when it stopped are not in the log."""
    artifacts = (workdir / "artifacts").as_uri()
    timelines: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
    loads = []
    for line in sampler_log.read_text().splitlines():
        m = SAMPLE_LINE.match(line)
        if m and m.group(6) == artifacts:
            task = int(m.group(7))
            timelines[task].append(
                (float(m.group(1)), int(m.group(4)) / 100, int(m.group(5)) / 1024)
            )
            loads.append(float(m.group(2)))
    per_task, stages = [], {}
    for task, timeline in sorted(timelines.items()):
        log_path = workdir / f"task{task}.log"
        per_task.append(
            {
                "task": task,
                "cpu_s_so_far": round(timeline[-1][1], 1),
                "peak_rss_mb_so_far": round(max(p for _, _, p in timeline), 1),
                "sampled_s": round(timeline[-1][0] - timeline[0][0], 1),
            }
        )
        stages[f"task{task}"] = {
            "wall_s": stage_seconds([log_path])[log_path.stem],
            "cpu_s": stage_cpu(log_path, timeline),
            "lines": stage_lines(log_path),
        }
    return {
        "partial": f"stopped before the end; figures from {sampler_log.name} "
        "(bench/proc_sample.sh, every 10 s) and the task logs",
        "products": products,
        "workdir": str(workdir),
        "per_task": per_task,
        "stages": stages,
        "load_avg_1min_sampled": {
            "mean": round(float(np.mean(loads)), 2) if loads else None,
            "min": min(loads, default=None),
            "max": max(loads, default=None),
        },
    }


def stage_lines(path: Path) -> list[dict[str, Any]]:
    """The task's `stage` log lines with what they say of rows, rounds and epochs."""
    keep = ("stage", "duration_s", "rows", "products", "history_days", "best_iteration")
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and STAGE.match(str(doc.get("message", ""))):
            out.append({k: doc[k] for k in ("time", *keep) if k in doc})
    return out


def estimate_partition_cpu(
    partial: dict[str, Any],
    task: str,
    members: int = 4,
    patience: int = 100,
    round_cpu_s: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """CPU seconds of one partition of a stopped run (`partial_result`): the stages it
    finished as measured, the LightGBM members it did not reach as the mean of those it
    did, and each refit member as its held-out twin's CPU x best / (best + patience)
    (the refit boosts `best` rounds on the same number of rows, the twin ran `best +
    patience`). An estimate from measured parts, labelled as such.

    `round_cpu_s` = (a training round, a refit round) in CPU seconds measured with one
    thread (`bench/gbm_prep_peak.py --threads 1 --rounds N`): the members' CPU is then
    their rounds (best + patience; the refit best) x those, instead of the CPU the run's
    two-thread boosters used (on a loaded machine two OpenMP threads spin while waiting
    for each other: 7x the CPU of one thread here)."""
    lines = partial["stages"][task]["lines"]
    cpu = partial["stages"][task]["cpu_s"]
    done = [ln for ln in lines if ln.get("stage") == "lightgbm"]
    measured_members = cpu.get("lightgbm", 0.0)
    n_done = len(done)
    mean_member = measured_members / n_done if n_done else float("nan")
    best = [int(ln["best_iteration"]) for ln in done]
    refit_share = float(np.mean([b / (b + patience) for b in best])) if best else float("nan")
    lightgbm = mean_member * members
    refit = lightgbm * refit_share
    if round_cpu_s is not None and best:
        mean_best = float(np.mean(best))
        lightgbm = members * (mean_best + patience) * round_cpu_s[0]
        refit = members * mean_best * round_cpu_s[1]
    other = sum(v for k, v in cpu.items() if k not in ("lightgbm", "lightgbm_refit", "partition"))
    if round_cpu_s is not None:
        other -= cpu.get("lightgbm_rows", 0.0)  # in the one-thread figure
    return {
        "measured_stages_cpu_s": round(other + measured_members, 1),
        "lightgbm_members_measured": n_done,
        "lightgbm_member_cpu_s_mean": round(mean_member, 1),
        "lightgbm_best_rounds": best,
        "lightgbm_from": "rounds x one-thread CPU a round" if round_cpu_s else "measured CPU",
        "lightgbm_cpu_s_estimated": round(lightgbm, 1),
        "lightgbm_refit_cpu_s_estimated": round(refit, 1),
        "other_stages_cpu_s_measured": round(other, 1),
        "partition_cpu_s_estimated": round(other + lightgbm + refit, 1),
        "not_counted": "the stages after the refit (intervals, test evaluation, judging, "
        "saving): not reached, not measured",
    }


def write_projection(args: argparse.Namespace) -> dict[str, Any]:
    """`--project`: per-partition CPU from the given results (finished runs, or runs
    stopped early written by `--partial`: their partitions estimated from the measured
    stages), the final forecast's CPU per product from forecast-only results
    (`--forecast-with`), and the targets projected at each partition size and speedup."""
    points, overheads, forecasts, sources = [], [], [], []
    round_cpu = None
    if args.gbm_rounds_result:
        one = json.loads(args.gbm_rounds_result.read_text())
        rounds = sum(one["members_rounds"])
        round_cpu = (one["train_gbm_cpu_s"] / rounds, one["refit_gbm_cpu_s"] / rounds)
        sources.append(
            {"result": str(args.gbm_rounds_result), "round_cpu_s": [round(x, 4) for x in round_cpu]}
        )
    for path in args.project:
        doc = json.loads(path.read_text())
        if "partial" in doc:
            for task in sorted(doc["stages"]):
                lines = doc["stages"][task]["lines"]
                sizes = [ln["products"] for ln in lines if ln.get("stage") == "partition"]
                sizes = sizes or [
                    ln["products"] for ln in lines if ln.get("stage") == "bias" and "products" in ln
                ]
                cpu = doc["stages"][task]["cpu_s"]
                if "lstm" not in cpu or "lightgbm" not in cpu:
                    continue  # its LSTM or LightGBM was not sampled: no estimate
                est = estimate_partition_cpu(doc, task, round_cpu_s=round_cpu)
                size = sizes[0] if sizes else doc["products"]
                points.append((float(size), est["partition_cpu_s_estimated"]))
                sources.append({"result": str(path), "task": task, "products": size, **est})
        elif doc.get("partitioned", {}).get("forecast_only"):
            run = doc["partitioned"]  # every task's forecast (each its partitions)
            done = [c["forecast"] for c in run["stage_cpu_s"].values() if "forecast" in c]
            cpu = sum(done) if done else None
            if cpu is not None:
                forecasts.append(cpu / doc["products"])
                sources.append({"result": str(path), "forecast_cpu_s": cpu})
        else:
            costs = partition_costs(doc)
            sources.append({"result": str(path), **costs})
            points += costs["partition_points"]
            if costs["task0_overhead_cpu_s"] is not None:
                overheads.append(costs["task0_overhead_cpu_s"])
            if costs["forecast_cpu_s_per_product"] is not None:
                forecasts.append(costs["forecast_cpu_s_per_product"])
    if not points:
        raise SystemExit("--project: no partition's CPU in these results")
    overhead = max(overheads) if overheads else args.overhead_cpu_s
    forecast = max(forecasts) if forecasts else 0.0
    doc = {
        "measured": sources,
        "assumptions": {
            "price_vcpu_s_usd": PRICE_VCPU_S,
            "price_gib_s_usd": PRICE_GIB_S,
            "price_source": "https://cloud.google.com/run/pricing, Tier 1, jobs (2026-12-06)",
            "task0_overhead_cpu_s": overhead,
            "task0_overhead_source": "measured" if overheads else "--overhead-cpu-s",
            "forecast_cpu_s_per_product": forecast,
            "partition_cpu": "a + b x products through the points (flat at the largest "
            "if the line falls); one point: proportional",
        },
        "projections": [
            project(points, overhead, forecast, size, speedup)
            for size in args.project_sizes
            for speedup in args.speedup
        ],
    }
    out = args.out or ROOT / "bench/results/train_scale_projection.json"
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(json.dumps(doc, indent=1, default=str))
    return doc


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the options, run the bench, write and return the result."""
    from trainer.run.partitions import DEFAULT_PARTITION_SIZE

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--products", type=int, default=1000)
    ap.add_argument("--years", type=float, default=3.0)
    ap.add_argument("--tasks", type=int, default=2, help="local task processes")
    ap.add_argument("--partition-size", type=int, default=DEFAULT_PARTITION_SIZE)
    ap.add_argument("--seed", type=int, default=26)
    ap.add_argument(
        "--compare-one-model",
        action="store_true",
        help="also train the same catalogue as one partition (one model, one task)",
    )
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a trainer setting for the run (e.g. TRIALS=1, EPOCHS=1, TRAIN_CONFIG=...); "
        "default: the trainer's defaults",
    )
    ap.add_argument(
        "--only-tasks",
        help="comma-separated task indices to start (a subset of the job's partitions, "
        "for a catalogue too large to train here whole; set TRAIN_GATHER_TIMEOUT_S low)",
    )
    ap.add_argument(
        "--project",
        nargs="+",
        type=Path,
        metavar="RESULT.json",
        help="run nothing: project 10k here, 30k and 1M products from these results' "
        "measured per-partition CPU (written to --out, default "
        "bench/results/train_scale_projection.json)",
    )
    ap.add_argument(
        "--speedup",
        type=float,
        nargs="+",
        default=[2.0],
        help="effective parallelism of a task for --project (CPU seconds per wall second)",
    )
    ap.add_argument(
        "--gbm-rounds-result",
        type=Path,
        help="for --project: a `bench/gbm_prep_peak.py --threads 1 --rounds N --refit` "
        "result; LightGBM's CPU is then rounds x its CPU a round",
    )
    ap.add_argument(
        "--overhead-cpu-s",
        type=float,
        default=400.0,
        help="task 0's start-up and shared tuning in CPU seconds for --project when no "
        "finished run measured it (default: the 150 s tuning budget on 2 cores + a trial)",
    )
    ap.add_argument(
        "--project-sizes",
        type=int,
        nargs="+",
        default=[2000, 5000],
        help="partition sizes to project with",
    )
    ap.add_argument(
        "--forecast-with",
        type=Path,
        metavar="ARTIFACTS",
        help="train nothing: forecast the catalogue with the champion in this artifact "
        "folder (--mode forecast in --tasks processes, each its partitions: the final "
        "forecast's cost at this size)",
    )
    ap.add_argument(
        "--partial",
        type=Path,
        metavar="RUN_WORKDIR",
        help="run nothing: the figures so far of a run stopped before its end (its "
        "workdir, e.g. WORKDIR/partitioned), from --sampler-log",
    )
    ap.add_argument(
        "--sampler-log", type=Path, help="the output of bench/proc_sample.sh for --partial"
    )
    ap.add_argument("--workdir", type=Path, help="keep the databases and logs here")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.products < 1 or args.tasks < 1 or args.partition_size < 1:
        raise SystemExit("--products, --tasks and --partition-size must be >= 1")
    if args.project:
        return write_projection(args)
    if args.partial:
        doc = partial_result(args.partial, args.sampler_log, args.products)
        if args.out:
            args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(json.dumps(doc["per_task"], indent=1))
        return doc
    extra = dict(item.split("=", 1) for item in args.env)
    out = args.out or ROOT / f"bench/results/train_scale_{args.products}.json"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fg-train-scale-"))

    t = time.monotonic()
    history, future = catalogue(args.products, args.years, args.seed)
    print(
        f"catalogue: {args.products} products x {history['date'].nunique()} days "
        f"({len(history):,} product-days) in {time.monotonic() - t:.0f} s; workdir {workdir}",
        flush=True,
    )
    result: dict[str, Any] = {
        "products": args.products,
        "years": args.years,
        "days": int(history["date"].nunique()),
        "product_days": len(history),
        "seed": args.seed,
        "settings": extra or "trainer defaults",
        "cpus": os.cpu_count(),
        "measured_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    }
    result["partitioned"] = run_once(
        "partitioned",
        history,
        future,
        tasks=args.tasks,
        partition_size=args.partition_size,
        extra_env=extra,
        workdir=workdir / "partitioned",
        only=[int(i) for i in args.only_tasks.split(",")] if args.only_tasks else None,
        champion=args.forecast_with,
    )
    if args.compare_one_model:
        result["one_model"] = run_once(
            "one-model",
            history,
            future,
            tasks=1,
            partition_size=max(args.products, DEFAULT_PARTITION_SIZE),
            extra_env=extra,
            workdir=workdir / "one_model",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}", flush=True)
    return result


if __name__ == "__main__":
    main()

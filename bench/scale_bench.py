"""The health check at scale (issue 24): the Beam pipeline on FnApiRunner, here.

Synthesises N products x (the reference: `REFERENCE_DAYS`' default, 90 days, or
`--reference-days`, 4 weeks at least; + 30 window days) straight into Parquet files
(vectorised, by chunks of products; never through the ORM), or into the BigQuery
emulator, then runs jobs/health_beam on Beam's in-process FnApiRunner and reports per N:
wall time, CPU seconds per 1,000 products, peak RSS of the whole process tree (sampled
every 0.2 s), and the bytes the pipeline read. Then the extrapolation, on paper, to
Dataflow (formula and prices in docs/benchmarks.md).

Run in .venv-beam (make beam-setup), niced and in the background on a shared machine:

    nice -n 10 .venv-beam/bin/python bench/scale_bench.py --products 10000,100000 \\
        --json /tmp/scale.json

`--source emulator` reads through the BigQuery emulator's Storage Read API instead (the
emulator process is then part of the measured tree).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AS_OF = date(2026, 5, 30)
WINDOW_DAYS = 30
WEEK = np.array([0.86, 0.87, 0.85, 0.99, 1.19, 1.52, 0.72])
CHUNK = 20_000  # products synthesised at a time
PRODUCTS_PER_ROW_GROUP = 500

# Dataflow batch prices, us-central1, as published (USD): per vCPU-hour, per GB-hour of
# memory, per GB-hour of standard persistent disk. Check cloud.google.com/dataflow/pricing.
VCPU_HOUR = 0.056
GB_HOUR = 0.003557
PD_GB_HOUR = 0.000054
WORKER_VCPUS, WORKER_GB, WORKER_DISK_GB = 4, 15.0, 25.0  # n1-standard-4, Shuffle service
STARTUP_MIN = 4.0  # worker VMs booting and the image pulled, before the first element


def default_reference_days() -> int:
    """The check's default reference (`REFERENCE_DAYS`, issue 23: 90 days)."""
    from forecastguard.config import Settings

    return Settings.__dataclass_fields__["reference_days"].default


def _days(reference_days: int, window_days: int = WINDOW_DAYS) -> tuple[date, int]:
    """The first synthesised day and how many days: the history the check reads before
    the window (`reference_days`, at least 4 weeks) plus the window."""
    from forecastguard.health.window import history_days

    hist = history_days(window_days, reference_days)
    start = AS_OF - timedelta(days=window_days - 1 + hist)
    return start, hist + window_days


def synth_chunks(n: int, reference_days: int, seed: int = 0, drift_share: float = 0.05):
    """(sales, predictions) frames of consecutive chunks of products, sorted by product
    and day: Poisson sales around a level with a weekly pattern, forecasts of the mean
    with a 10 % error; `drift_share` of the products sell 1.6 times more in the window."""
    start, n_days = _days(reference_days)
    dates = pd.date_range(start, periods=n_days).date
    hist = n_days - WINDOW_DAYS
    weekday = (np.arange(n_days) + start.weekday()) % 7
    created = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    width = len(str(n - 1))
    for lo in range(0, n, CHUNK):
        k = min(CHUNK, n - lo)
        rng = np.random.default_rng([seed, lo])
        level = np.exp(rng.normal(np.log(8.0), 0.8, k))
        mean = level[:, None] * WEEK[weekday][None, :]
        actual = mean.copy()
        drifted = rng.random(k) < drift_share
        actual[drifted, hist:] *= 1.6
        ids = np.array([f"P{i:0{width}d}" for i in range(lo, lo + k)], dtype=object)
        pid = np.repeat(ids, n_days)
        day = np.tile(dates, k)
        sales = pd.DataFrame(
            {"product_id": pid, "sale_date": day, "units_sold": rng.poisson(actual).ravel() * 1.0}
        )
        preds = pd.DataFrame(
            {
                "product_id": pid,
                "target_date": day,
                "predicted_units": (mean * np.exp(rng.normal(0, 0.1, mean.shape))).ravel(),
                "model_version": "m1",
                "created_at": created,
            }
        )
        yield ids, sales, preds


def write_parquet(folder: Path, n: int, reference_days: int, seed: int = 0) -> int:
    """The Parquet layout `health_beam.sources.ParquetSource` reads; returns bytes on disk."""
    from forecastguard.bigquery import TABLES

    writers: dict[str, pq.ParquetWriter] = {}
    ids_all = []
    rows_per_group = PRODUCTS_PER_ROW_GROUP * _days(reference_days)[1]
    types = {"STRING": pa.string(), "DATE": pa.date32(), "FLOAT64": pa.float64()}
    types["TIMESTAMP"] = pa.timestamp("us")
    for ids, sales, preds in synth_chunks(n, reference_days, seed):
        ids_all.append(ids)
        for name, frame in (("sales", sales), ("predictions", preds)):
            columns = [(c, types[t]) for c, t, _ in TABLES[name][0] if c in frame.columns]
            schema = pa.schema(columns)
            table = pa.Table.from_pandas(frame[[c for c, _ in columns]], schema=schema)
            if name not in writers:
                (folder / name).mkdir(parents=True, exist_ok=True)
                writers[name] = pq.ParquetWriter(folder / name / "part-0.parquet", schema)
            writers[name].write_table(table, row_group_size=rows_per_group)
    for writer in writers.values():
        writer.close()
    pq.write_table(
        pa.table({"product_id": np.concatenate(ids_all).astype(str)}), folder / "products.parquet"
    )
    return sum(f.stat().st_size for f in folder.rglob("*.parquet"))


class TreeSampler:
    """Peak RSS of a process and all its children."""

    def __init__(self, root: psutil.Process | None = None, every_s: float = 0.2) -> None:
        self.me = root or psutil.Process()
        self.peak = 0
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[psutil.Process]:
        return [self.me, *self.me.children(recursive=True)]

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for p in self._tree():
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            self.peak = max(self.peak, rss)
            self._stop.wait(self.every_s)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def extrapolate(cpu_s_per_1000: float, n: int, target_min: float = 10.0) -> dict:
    """Dataflow on paper: the workers that finish the CPU work within `target_min` minus
    start-up, the minutes, and the $ of vCPU, memory and disk hours."""
    cpu_s = cpu_s_per_1000 * n / 1000
    compute_min = max(target_min - STARTUP_MIN, 1.0)
    workers = max(1, math.ceil(cpu_s / (WORKER_VCPUS * compute_min * 60)))
    minutes = STARTUP_MIN + cpu_s / (workers * WORKER_VCPUS * 60)
    hours = workers * minutes / 60
    cost = hours * (WORKER_VCPUS * VCPU_HOUR + WORKER_GB * GB_HOUR + WORKER_DISK_GB * PD_GB_HOUR)
    return {
        "products": n,
        "cpu_s": round(cpu_s, 1),
        "workers": workers,
        "minutes": round(minutes, 1),
        "usd": round(cost, 3),
    }


def run_one(
    n: int, source: str, batch_size: int, seed: int, work: Path, reference_days: int
) -> dict:
    """Synthesise, then run and measure the pipeline on `n` products."""
    from forecastguard.db.engine import make_engine
    from forecastguard.db.migrate import upgrade

    folder = work / f"n{n}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    control = f"sqlite:///{folder / 'control.db'}"
    engine = make_engine(control)
    upgrade(engine)
    engine.dispose()
    t0 = time.perf_counter()
    argv = [f"--as_of={AS_OF}", f"--window_days={WINDOW_DAYS}", f"--batch_size={batch_size}"]
    argv.append(f"--reference_days={reference_days}")
    argv.append(f"--control_database_url={control}")
    emulator = None
    if source == "parquet":
        on_disk = write_parquet(folder, n, reference_days, seed)
        argv.append(f"--source=parquet://{folder}")
    else:
        from forecastguard import bigquery as bq
        from tests.support.bigquery_emulator import BigQueryEmulator

        emulator = BigQueryEmulator(sys.executable)
        target = bq.BigQueryTarget(
            emulator.project, "bench", emulator.rest_url, emulator.grpc_target
        )
        client = target.client()
        bq.ensure_tables(client, target)
        for _, sales, preds in synth_chunks(n, reference_days, seed):
            bq.load_frame(client, target, "sales", sales)
            bq.load_frame(client, target, "predictions", preds)
        on_disk = 0
        argv += [
            f"--source={target.url}",
            f"--bq_api_endpoint={target.api_endpoint}",
            f"--bq_storage_endpoint={target.storage_target}",
        ]
    synth_s = time.perf_counter() - t0
    try:
        # The pipeline in a fresh process (what `forecastguard health --engine beam` runs),
        # so the synthesis' memory is not in its figures; the emulator, when used, is a
        # child of this process, outside the pipeline's tree.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "health_beam", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with TreeSampler(psutil.Process(proc.pid)) as sampler:
            _, err = proc.communicate()
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"the pipeline failed ({proc.returncode}): {err[-2000:]}")
        brief = json.loads(err.strip().splitlines()[-1])
    finally:
        if emulator is not None:
            emulator.stop()
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "products": n,
        "source": source,
        "batch_size": batch_size,
        "reference_days": reference_days,
        "days": _days(reference_days)[1],
        "synth_s": round(synth_s, 1),
        "data_bytes_on_disk": on_disk,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu_s, 1),
        "cpu_s_per_1000_products": round(cpu_s / n * 1000, 3),
        "peak_rss_mb": round(sampler.peak / 2**20),
        "bytes_read": brief["pipeline"]["bytes_read"],
        "batches": brief["pipeline"]["batches"],
        "healthy": brief["healthy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", default="10000,100000", help="comma-separated N")
    parser.add_argument("--source", choices=["parquet", "emulator"], default="parquet")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reference-days",
        type=int,
        help="the check's reference (default: REFERENCE_DAYS' default, 90); the data "
        "holds that much history before the window",
    )
    parser.add_argument("--work", type=Path, help="folder for the data (default: a temp one)")
    parser.add_argument("--json", type=Path, help="append one JSON line per N here")
    args = parser.parse_args()
    if args.reference_days is not None and not 0 <= args.reference_days <= 366:
        parser.error(f"--reference-days must be 0-366, got {args.reference_days}")
    reference_days = (
        default_reference_days() if args.reference_days is None else args.reference_days
    )
    work = args.work or Path(tempfile.mkdtemp(prefix="fg-scale-"))
    rows = []
    for n in (int(x) for x in args.products.split(",")):
        row = run_one(n, args.source, args.batch_size, args.seed, work, reference_days)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            with args.json.open("a") as out:
                out.write(json.dumps(row) + "\n")
        shutil.rmtree(work / f"n{n}", ignore_errors=True)
    per_1000 = max(r["cpu_s_per_1000_products"] for r in rows)
    for n in (1_000_000, 10_000_000):
        paper = extrapolate(per_1000, n)
        print(json.dumps({"dataflow_extrapolation": paper, "cpu_s_per_1000": per_1000}))
        if args.json:
            with args.json.open("a") as out:
                out.write(json.dumps({"dataflow_extrapolation": paper}) + "\n")


if __name__ == "__main__":
    main()

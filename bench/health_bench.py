"""Benchmark of the health check: 10,000 products x 30 days, from SQLite and from MariaDB.

Fills each database with 60 days of sales and forecasts (the window and the previous
window, the error reference), then runs the whole check — read, statistics, store
(10,000 product rows), metrics to a JSON-lines file — in a fresh process, twice: the
first check of a cold process and a repeat in the same process (a warm function
instance). Each child reports the check's wall time and the process's peak RSS. Also
measures the cold import of functions/health/main.py and that TensorFlow never loads.

    .venv/bin/python bench/health_bench.py [--products 10000] [--repeats 3]
                                           [--no-sqlite] [--no-mariadb]
                                           [--reference-days 90] [--older-days 730]
                                           [--intervals] [--json out.json]
                                           [--sqlite-path FILE] [--mariadb-db NAME]
                                           [--fill-only] [--compare-code DIR]

`--older-days N` adds N days of sales and forecasts before the days the check reads (a
store's years of history), which the check must not read. `--intervals` stores the
served P10/P50/P90 with every forecast (issue 27), as the trainer writes them
(`trainer.models.intervals`: `max(0, point + scale * q)`, the scale growing with the
level), so the check runs its coverage tests as it does for a model serving intervals.

`--sqlite-path FILE` and `--mariadb-db NAME` keep the filled databases (a file, a
database on the server) instead of throwaway ones, and reuse them when they exist (not
filled again: give the options of the run that filled them, or the figures are of other
data); `--fill-only` fills them and runs no check. `--compare-code DIR` also runs the
check of another tree (`git worktree add DIR <commit>`), a process of it and one of
this tree in turn: an A/B on the same data in the same minutes. A check stores its
result and drift episodes (the next check's reference): they are deleted before each
measured process, so every process starts from the data as filled.

On MariaDB each child also reports the CPU of the server threads that served its own
connections (`first_server_own_cpu_s`, `repeat_server_own_cpu_s`): the server's whole
CPU (`server_cpu_s`) counts other jobs' queries too when the machine is shared.

Targets (issue 3): check <= 3 s, peak RSS <= 400 MB, cold import <= 1.5 s.
The MariaDB server is the tests' (FG_TEST_MYSQL_URL, else root@127.0.0.1:3306); the
benchmark creates a throwaway database there and drops it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

AS_OF = date(2026, 5, 30)
WINDOW_DAYS = 30


def _bulk_insert(engine, table: str, columns: list[str], rows: list[tuple]) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        mark = "?" if engine.dialect.name == "sqlite" else "%s"
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
        for start in range(0, len(rows), 10_000):
            cursor.executemany(sql, rows[start : start + 10_000])
        raw.commit()
    finally:
        raw.close()


Z90 = 1.2815515655446004  # the standard normal's 90 % quantile
PREDICTION_COLUMNS = ["product_id", "target_date", "predicted_units", "model_version", "created_at"]
INTERVAL_COLUMNS = ["predicted_p10", "predicted_p50", "predicted_p90"]


def intervals(point: np.ndarray, noise: float = 0.1) -> tuple[np.ndarray, ...]:
    """(P10, P50, P90) of Poisson demand around `point` with `noise` relative error in
    the point, as the trainer serves them: `max(0, point + scale * q)`, full floats."""
    scale = np.sqrt(point + (noise * point) ** 2)
    return (
        np.maximum(0.0, point - Z90 * scale),
        point,
        point + Z90 * scale,
    )


def fill(
    url: str,
    n_products: int,
    reference_days: int = 0,
    older_days: int = 0,
    with_intervals: bool = False,
) -> None:
    """Migrate the database and write the synthetic sales and forecasts (with their
    served P10/P50/P90 when `with_intervals`); `older_days` more days of both before
    the history the check reads (a store's years of sales)."""
    from forecastguard.db.engine import make_engine
    from forecastguard.db.migrate import upgrade
    from tests.integration.health.synthetic import frames, synthetic_window

    engine = make_engine(url)
    upgrade(engine)
    from forecastguard.health.window import history_days

    history = history_days(WINDOW_DAYS, reference_days or None)
    data = synthetic_window(
        n_products, AS_OF, WINDOW_DAYS, seed=42, drift_share=0.01, history=history
    )
    sales_frame, predictions_frame = frames(data)
    start = time.perf_counter()
    _bulk_insert(
        engine,
        "sales",
        ["product_id", "sale_date", "units_sold"],
        list(
            zip(
                sales_frame["product_id"],
                [d.isoformat() for d in sales_frame["sale_date"]],
                sales_frame["units_sold"].astype(float),
                strict=True,
            )
        ),
    )
    point = predictions_frame["predicted_units"].to_numpy(np.float64)
    rows = [
        (p, d.isoformat(), u, "lstm-bench", "2026-04-01 06:00:00")
        for p, d, u in zip(
            predictions_frame["product_id"],
            predictions_frame["target_date"],
            point.tolist(),
            strict=True,
        )
    ]
    columns = PREDICTION_COLUMNS
    if with_intervals:
        bands = zip(*(b.tolist() for b in intervals(point)), strict=True)
        rows = [(*row, *band) for row, band in zip(rows, bands, strict=True)]
        columns = PREDICTION_COLUMNS + INTERVAL_COLUMNS
    _bulk_insert(engine, "predictions", columns, rows)
    print(
        f"  filled {len(sales_frame)} sales and {len(predictions_frame)} forecasts "
        f"in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    if older_days:
        _fill_older(
            engine,
            sorted(set(sales_frame["product_id"])),
            min(sales_frame["sale_date"]),
            older_days,
        )
    engine.dispose()


def _fill_older(engine, products: list[str], first: date, days: int) -> None:
    """`days` days of sales and forecasts before `first`, every product, in chunks."""
    rng = np.random.default_rng(7)
    start = time.perf_counter()
    for chunk in range(0, days, 20):
        sales_rows, forecast_rows = [], []
        for back in range(chunk + 1, min(chunk + 20, days) + 1):
            day = (first - timedelta(days=back)).isoformat()
            units = rng.poisson(5.0, len(products)).astype(float)
            sales_rows += [(p, day, u) for p, u in zip(products, units, strict=True)]
            forecast_rows += [(p, day, 5.0, "lstm-old", "2025-01-01 06:00:00") for p in products]
        _bulk_insert(engine, "sales", ["product_id", "sale_date", "units_sold"], sales_rows)
        _bulk_insert(
            engine,
            "predictions",
            ["product_id", "target_date", "predicted_units", "model_version", "created_at"],
            forecast_rows,
        )
        print(f"  older days {min(chunk + 20, days)}/{days}", end="\r", flush=True)
    print(
        f"  filled {days} older days ({days * len(products)} sales and forecasts) "
        f"in {time.perf_counter() - start:.1f} s",
        flush=True,
    )


def peak_rss_mb() -> float:
    """This process's peak resident set size, MB: VmHWM, which exec resets (Linux), else
    ru_maxrss — which Linux carries across exec from the parent: a child started after
    `fill` reported the filling parent's 543 MB as its own (issue 23)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(url: str, metrics_path: str) -> None:
    """Run the check twice in this (fresh) process; print the figures as JSON. With
    FG_BENCH_CODE, the check of that tree's `shared/` (an A/B against other code)."""
    code = os.environ.get("FG_BENCH_CODE")
    if code:
        sys.path.insert(0, str(Path(code) / "shared"))
    start = time.perf_counter()
    from forecastguard.config import Settings
    from forecastguard.db.engine import make_engine
    from forecastguard.health.check import interval_coverage
    from forecastguard.health.service import HealthService

    imported = time.perf_counter() - start
    engine = make_engine(url)
    threads = _ServerThreads(engine)
    service = HealthService(
        Settings.from_env(
            {"REFERENCE_DAYS": os.environ.get("FG_BENCH_REFERENCE_DAYS", "0")},
            metrics_sink=metrics_path,
        ),
        engine=engine,
    )
    runs, cpu, own = [], [], []
    for _ in range(2):
        start, start_cpu, start_own = time.perf_counter(), time.process_time(), threads.cpu_s()
        result = service.run(AS_OF, WINDOW_DAYS)
        runs.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        own.append(None if start_own is None else threads.cpu_s() - start_own)
    rss = peak_rss_mb()
    print(
        json.dumps(
            {
                "import_s": imported,
                "first_s": runs[0],
                "repeat_s": runs[1],
                "first_cpu_s": cpu[0],
                "repeat_cpu_s": cpu[1],
                "first_server_own_cpu_s": own[0],
                "repeat_server_own_cpu_s": own[1],
                "compute_s": result.duration_s,
                "rss_mb": rss,
                "n_products": result.n_products,
                "n_pairs": result.n_pairs,
                "n_tested": result.n_tested,
                "drift_detected": result.drift_detected,
                "interval_coverage": interval_coverage(result.products),
                "metrics_written": result.outputs["metrics"]["written"],
                "tensorflow": "tensorflow" in sys.modules,
                "code": str(Path(sys.modules["forecastguard"].__file__).parents[1]),
            }
        )
    )


class _ServerThreads:
    """The CPU of the local MariaDB server's threads that serve this process's connections
    (one thread a connection: PROCESSLIST's TID), counted from when each connected: the
    check's own server time, which `server_cpu_s` mixes with whatever else the server does
    (other jobs' queries on a shared machine). None where that is unknown (SQLite, no
    local server, a thread pool, not Linux)."""

    def __init__(self, engine) -> None:
        import sqlalchemy as sa

        self._base: dict[int, int] = {}
        self._pid = _server_pid() if engine.dialect.name in {"mysql", "mariadb"} else None
        if self._pid is not None:
            sa.event.listen(engine, "connect", self._connected)

    def _ticks(self, tid: int) -> int | None:
        try:
            with open(f"/proc/{self._pid}/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            return None

    def _connected(self, dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(
                "SELECT TID FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
            )
            row = cursor.fetchone()
        except Exception:  # MySQL without the TID column: not measured
            row = None
        finally:
            cursor.close()
        ticks = None if not row or row[0] is None else self._ticks(int(row[0]))
        if ticks is not None:
            self._base[int(row[0])] = ticks

    def cpu_s(self) -> float | None:
        """CPU seconds of the connections' server threads since they connected."""
        if self._pid is None:
            return None
        total = 0
        for tid, base in list(self._base.items()):
            ticks = self._ticks(tid)
            if ticks is not None:
                total += ticks - base
        return total / os.sysconf("SC_CLK_TCK")


def _server_pid() -> int | None:
    for name in ("mariadbd", "mysqld"):
        pids = subprocess.run(
            ["pgrep", "-x", name], capture_output=True, text=True, check=False
        ).stdout.split()
        if pids:
            return int(pids[0])
    return None


def server_cpu_s() -> float | None:
    """CPU seconds (user + system) of this machine's MariaDB/MySQL server so far, from
    /proc (None: no local server found, or not Linux). The check's own CPU leaves out
    the server's aggregation of the rows, which on two cores competes with it."""
    for name in ("mariadbd", "mysqld"):
        try:
            pids = subprocess.run(
                ["pgrep", "-x", name], capture_output=True, text=True, check=False
            ).stdout.split()
            if pids:
                with open(f"/proc/{pids[0]}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
    return None


def reset_checks(url: str) -> None:
    """Delete the stored health checks and drift episodes: each measured process starts
    from the filled database as it was (a check's episodes change the next one's
    reference, so the processes of an A/B see the same data)."""
    import sqlalchemy as sa

    from forecastguard.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for table in ("health_check_products", "health_checks", "health_drift_episodes"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
    finally:
        engine.dispose()


def measure(url: str, repeats: int, codes: tuple[str | None, ...] = (None,)) -> list[list[dict]]:
    """Run the check in `repeats` fresh processes a code tree (with the local database
    server's CPU over each process's two checks, `server_cpu_s`, on MariaDB), each from
    the database as filled (`reset_checks`). `codes`: the trees whose `shared/` the
    checks run (None: this one), one process of each in turn, `repeats` rounds."""
    results: list[list[dict]] = [[] for _ in codes]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for k, code in enumerate(codes):
                reset_checks(url)
                server_before = None if url.startswith("sqlite") else server_cpu_s()
                env = {**os.environ, "LOG_LEVEL": "WARNING"}
                if code:
                    env["FG_BENCH_CODE"] = str(Path(code).resolve())
                out = subprocess.run(
                    [sys.executable, __file__, "--child", url, str(Path(tmp) / "metrics.jsonl")],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                )
                run = json.loads(out.stdout.strip().splitlines()[-1])
                server_after = None if server_before is None else server_cpu_s()
                if server_before is not None and server_after is not None:
                    run["server_cpu_s"] = server_after - server_before
                results[k].append(run)
    return results


def cold_import(repeats: int) -> list[float]:
    """Seconds to import functions/health/main.py in a fresh interpreter."""
    code = (
        "import sys, time; t = time.perf_counter(); "
        f"sys.path[:0] = [{str(ROOT / 'functions' / 'health')!r}, {str(ROOT / 'shared')!r}]; "
        "import main; d = time.perf_counter() - t; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print(d)"
    )
    return [
        float(
            subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(repeats)
    ]


def _summary(name: str, runs: list[dict]) -> dict:
    first = statistics.median(r["first_s"] for r in runs)
    repeat = statistics.median(r["repeat_s"] for r in runs)
    compute = statistics.median(r["compute_s"] for r in runs)
    cpu = statistics.median(r["first_cpu_s"] for r in runs)
    repeat_cpu = statistics.median(r["repeat_cpu_s"] for r in runs)
    rss = max(r["rss_mb"] for r in runs)
    each = ", ".join(f"{r['first_s']:.2f}" for r in runs)
    tensorflow = any(r["tensorflow"] for r in runs)
    servers = [r["server_cpu_s"] for r in runs if "server_cpu_s" in r]
    server = statistics.median(servers) if servers else None
    server_text = "" if server is None else f", server CPU {server:.2f} s over both checks"
    owns = [r["first_server_own_cpu_s"] for r in runs if r.get("first_server_own_cpu_s")]
    own = statistics.median(owns) if owns else None
    repeat_owns = [r["repeat_server_own_cpu_s"] for r in runs if r.get("repeat_server_own_cpu_s")]
    repeat_own = statistics.median(repeat_owns) if repeat_owns else None
    if own is not None and repeat_own is not None:
        server_text += f" (its own threads: first {own:.2f} s, repeat {repeat_own:.2f} s)"
    print(
        f"{name:8s} first check {first:.2f} s (runs: {each}; CPU {cpu:.2f} s), repeat {repeat:.2f} s "
        f"(CPU {repeat_cpu:.2f} s), read+statistics {compute:.2f} s, peak RSS {rss:.0f} MB"
        f"{server_text}, TensorFlow loaded: {tensorflow}",
        flush=True,
    )
    return {
        "first_s": first,
        "repeat_s": repeat,
        "first_cpu_s": cpu,
        "repeat_cpu_s": repeat_cpu,
        "server_cpu_s": server,
        "first_server_own_cpu_s": own,
        "repeat_server_own_cpu_s": repeat_own,
        "rss_mb": rss,
        "runs": runs,
    }


def _report(report: dict, key: str, name: str, runs: list[list[dict]]) -> None:
    """The summaries of `measure`'s runs: this tree's under `key`, the compared tree's
    (the first when there are two) under `key`_compare."""
    if len(runs) == 2:
        report[f"{key}_compare"] = _summary(f"{name} (compared code)", runs[0])
    report[key] = _summary(name, runs[-1])


def main() -> None:
    """Fill the databases, run the checks, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-mariadb", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--reference-days", type=int, default=0, help="REFERENCE_DAYS (0: the window's 30)"
    )
    parser.add_argument(
        "--older-days",
        type=int,
        default=0,
        help="days of sales and forecasts older than the check reads (years of history)",
    )
    parser.add_argument(
        "--intervals",
        action="store_true",
        help="store the served P10/P50/P90 with every forecast (the coverage tests run)",
    )
    parser.add_argument("--json", help="also write the report to this file")
    parser.add_argument(
        "--sqlite-path", help="keep the SQLite database in this file (reused if it exists)"
    )
    parser.add_argument(
        "--mariadb-db", help="keep the MariaDB database under this name (reused if it exists)"
    )
    parser.add_argument("--fill-only", action="store_true", help="fill the databases, no check")
    parser.add_argument(
        "--compare-code",
        metavar="DIR",
        help="also run the checks of this tree (a git worktree of older code), its process "
        "and this tree's in turn on the same databases: an A/B ('<db>_compare' in the report)",
    )
    parser.add_argument("--child", nargs=2, metavar=("URL", "METRICS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    os.environ["FG_BENCH_REFERENCE_DAYS"] = str(args.reference_days)
    report: dict = {
        "products": args.products,
        "days": WINDOW_DAYS,
        "reference_days": args.reference_days,
        "older_days": args.older_days,
        "intervals": args.intervals,
        "cpus": os.cpu_count(),
    }
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    report["commit"] = commit or None
    report["load_average_before"] = os.getloadavg()
    if not args.fill_only:
        imports = cold_import(args.repeats)
        report["cold_import_s"] = imports
        print(
            f"cold import of functions/health/main.py: median {statistics.median(imports):.2f} s"
            f" (runs: {', '.join(f'{t:.2f}' for t in imports)}), no TensorFlow",
            flush=True,
        )
    fill_args = (args.products, args.reference_days, args.older_days, args.intervals)
    codes: tuple[str | None, ...] = (None,)
    if args.compare_code:
        codes = (args.compare_code, None)
        report["compare_code"] = args.compare_code
        report["compare_commit"] = (
            subprocess.run(
                ["git", "-C", args.compare_code, "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            or None
        )
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(args.sqlite_path) if args.sqlite_path else Path(tmp) / "bench.db"
            url = f"sqlite:///{path}"
            print("SQLite:", flush=True)
            if path.exists():
                print(f"  reusing {path}", flush=True)
            else:
                fill(url, *fill_args)
            if not args.fill_only:
                _report(report, "sqlite", "SQLite", measure(url, args.repeats, codes))
    if not args.no_mariadb:
        import sqlalchemy as sa

        server = os.environ.get("FG_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
        name = args.mariadb_db or f"fg_bench_{uuid.uuid4().hex[:10]}"
        if not name.replace("_", "").isalnum():
            raise SystemExit(f"--mariadb-db: letters, digits and _ only, got {name!r}")
        admin = sa.create_engine(server + "/")
        with admin.begin() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :n"),
                {"n": name},
            ).first()
            if not exists:
                conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
        try:
            print("MariaDB:", flush=True)
            if exists:
                print(f"  reusing database {name}", flush=True)
            else:
                fill(f"{server}/{name}", *fill_args)
            if not args.fill_only:
                runs = measure(f"{server}/{name}", args.repeats, codes)
                _report(report, "mariadb", "MariaDB", runs)
        finally:
            if not args.mariadb_db:
                with admin.begin() as conn:
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
            admin.dispose()
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()

"""Bounded load test of /model/health on localhost (issue 14).

Fills a fresh MariaDB database with a few thousand products (the synthetic window of
bench/health_bench.py), serves functions/health/main.py with the functions-framework
command (gunicorn: WORKERS processes x THREADS threads), and sends POST /model/health from
1, 4 and 16 concurrent clients for a fixed time each. Reports throughput, p50/p99
latency, errors, and checks that the stored `health_checks` rows equal the successful
responses. Every request is bounded (client timeout) and so is every level (--seconds).

    nice -n 10 .venv/bin/python bench/http_load.py [--products 3000] [--seconds 20]
        [--levels 1,4,16] [--threads 1] [--workers 1]
        [--server mysql+pymysql://root@127.0.0.1:3306]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "shared")]

TOKEN = "http-load-token"
BODY = {"as_of": "2026-05-30", "window_days": 30}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(url: str, threads: int, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    """Start the functions-framework server on a free port; wait until it answers."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "HEALTH_API_TOKEN": TOKEN,
        "THREADS": str(threads),
        "WORKERS": str(workers),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT / "shared"),
    }
    command = [
        str(Path(sys.executable).with_name("functions-framework")),
        "--source",
        str(ROOT / "functions" / "health" / "main.py"),
        "--target",
        "health_http",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    out = open(log, "ab")  # noqa: SIM115 - the child writes it until it is stopped
    proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(base + "/model/other", timeout=2)
            return proc, base
        except requests.RequestException:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the server did not start; see {log}")


def run_level(base: str, clients: int, seconds: float, timeout_s: float) -> dict:
    """`clients` threads posting for `seconds`; latencies and statuses."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        session = requests.Session()
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            try:
                status = str(
                    session.post(
                        base + "/model/health",
                        json=BODY,
                        headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=timeout_s,
                    ).status_code
                )
            except requests.RequestException as exc:
                status = type(exc).__name__
            elapsed = time.perf_counter() - start
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == "200":
                    latencies.append(elapsed)

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    ok = statuses.get("200", 0)
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "wall_s": round(wall, 1),
        "ok": ok,
        "errors": sum(n for s, n in statuses.items() if s != "200"),
        "statuses": statuses,
        "throughput_rps": round(ok / wall, 2),
        "p50_s": round(statistics.median(ordered), 3) if ordered else None,
        "p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3)
        if ordered
        else None,
    }


def stored_checks(url: str) -> int:
    """Rows in health_checks."""
    from forecastguard.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT COUNT(*) FROM health_checks")).scalar()
    finally:
        engine.dispose()


def settled(url: str, limit_s: float) -> int:
    """The stored checks once the count has not changed for 3 s (at most `limit_s`)."""
    last, stable_since, deadline = stored_checks(url), time.monotonic(), time.monotonic()
    deadline += limit_s
    while time.monotonic() - stable_since < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        now = stored_checks(url)
        if now != last:
            last, stable_since = now, time.monotonic()
    return last


def main() -> None:
    """Run the load test and print one JSON line per level, then a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout (s)")
    args = parser.parse_args()

    from bench.health_bench import fill

    name = f"fg_http_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(args.server + "/")
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    url = f"{args.server}/{name}"
    log = Path(f"/tmp/{name}.log")
    proc = None
    try:
        fill(url, args.products)
        proc, base = serve(url, args.threads, args.workers, log)
        rows = []
        for level in (int(x) for x in args.levels.split(",")):
            before = stored_checks(url)
            result = run_level(base, level, args.seconds, args.timeout)
            # A request the client gave up on (timeout) may still finish on the server:
            # wait until nothing more is stored before counting.
            result["stored"] = settled(url, args.timeout) - before
            timeouts = result["statuses"].get("ReadTimeout", 0)
            result["stored_equals_ok"] = result["stored"] == result["ok"]
            result["stored_within_ok_plus_timeouts"] = (
                result["ok"] <= result["stored"] <= result["ok"] + timeouts
            )
            result.update(products=args.products, threads=args.threads, workers=args.workers)
            print(json.dumps(result), flush=True)
            rows.append(result)
        print("\n| workers x threads | clients | req/s | p50 s | p99 s | errors | 200s | stored |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['workers']} x {r['threads']} | {r['clients']} | {r['throughput_rps']} | "
                f"{r['p50_s']} | {r['p99_s']} | {r['errors']} ({r['statuses']}) | {r['ok']} | "
                f"{r['stored']} |"
            )
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


if __name__ == "__main__":
    main()

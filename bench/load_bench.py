"""Bulk load benchmark: 300,000 sales rows into MariaDB (target: under 10 s).

Writes a long-format CSV of 300,000 rows (1,000 products x 300 days), then times
`forecastguard load-sales`'s two steps — reading and validating the file, and the
one-transaction upsert — into a fresh database, and once more to time a re-load
(every row an update). Usage:

    .venv/bin/python bench/load_bench.py [--server mysql+pymysql://root@127.0.0.1:3306]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.db.engine import make_engine
from forecastguard.db.migrate import upgrade
from forecastguard.sales_io import load_sales, read_sales_csv


def make_csv(path: Path, products: int, days: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2025-01-01", periods=days).strftime("%Y-%m-%d")
    frame = pd.DataFrame(
        {
            "product_id": np.repeat([f"P{i:05d}" for i in range(products)], days),
            "date": np.tile(dates, products),
            "units": rng.poisson(rng.gamma(1.0, 20.0, products).repeat(days)),
        }
    )
    frame.to_csv(path, index=False)
    return len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--days", type=int, default=300)
    args = parser.parse_args()

    name = f"fg_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.server + "/")
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        engine = make_engine(f"{args.server}/{name}")
        upgrade(engine)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sales.csv"
            rows = make_csv(path, args.products, args.days)
            t0 = time.perf_counter()
            frame = read_sales_csv(path)
            t1 = time.perf_counter()
            load_sales(engine, frame)
            t2 = time.perf_counter()
            load_sales(engine, read_sales_csv(path))
            t3 = time.perf_counter()
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT COUNT(*) FROM sales")).scalar()
        assert stored == rows, (stored, rows)
        print(f"rows: {rows:,} ({args.products} products x {args.days} days), MariaDB")
        print(f"read + validate:        {t1 - t0:6.2f} s")
        print(f"upsert (fresh table):   {t2 - t1:6.2f} s")
        print(f"first load, end to end: {t2 - t0:6.2f} s  (target < 10 s)")
        print(f"re-load (all updates):  {t3 - t2:6.2f} s")
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))


if __name__ == "__main__":
    main()

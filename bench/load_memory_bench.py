"""Peak memory of `forecastguard load-sales` by file size (issue 28: the size bound).

For each size, writes a long-format CSV (product_id,date,units) of about that many MB
and runs `forecastguard load-sales` on it into a fresh SQLite file, in a child process
whose peak resident memory (ru_maxrss) is read when it ends. The CLI's own start-up
(Python, pandas, SQLAlchemy) is measured the same way on `--help`. Usage:

    .venv/bin/python bench/load_memory_bench.py [--sizes 5 20 64]

The table it prints is in docs/security.md ("Limits").
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

BIN = Path(sys.executable).parent


def make_csv(path: Path, megabytes: float, seed: int = 0) -> int:
    """A long-format sales file of about `megabytes` MB (1,000 products); its row count."""
    rng = np.random.default_rng(seed)
    row_bytes = len("P00000,2025-01-01,12\n")
    days = max(1, int(megabytes * 1e6 / row_bytes / 1000))
    dates = pd.date_range("2000-01-01", periods=days).strftime("%Y-%m-%d")
    frame = pd.DataFrame(
        {
            "product_id": np.repeat([f"P{i:05d}" for i in range(1000)], days),
            "date": np.tile(dates, 1000),
            "units": rng.poisson(20, 1000 * days),
        }
    )
    frame.to_csv(path, index=False)
    return len(frame)


def peak_mb(args: list[str]) -> tuple[float, int]:
    """Run the command in a fresh child; its peak RSS in MB (Linux: KiB) and exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ})
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        raise SystemExit("a child's peak did not exceed an earlier one: run the sizes ascending")
    return after / 1024, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[5, 20, 64])
    args = parser.parse_args()
    cli = str(BIN / "forecastguard")
    base, _ = peak_mb([cli, "--help"])
    print(f"start-up (forecastguard --help): {base:.0f} MB")
    print("| file | rows | peak memory | over start-up | per file MB |")
    print("|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sorted(args.sizes):
            path = Path(tmp) / f"sales_{size:g}.csv"
            rows = make_csv(path, size)
            real_mb = path.stat().st_size / 1e6
            db = Path(tmp) / f"fg_{size:g}.db"
            subprocess.run(
                [cli, "db", "upgrade", "--database-url", f"sqlite:///{db}"],
                check=True,
                capture_output=True,
            )
            peak, code = peak_mb(
                [
                    cli,
                    "load-sales",
                    "--database-url",
                    f"sqlite:///{db}",
                    "--csv",
                    str(path),
                    "--max-bytes",
                    str(2**31),
                ]
            )
            if code != 0:
                raise SystemExit(f"load-sales failed on {path} (exit {code})")
            print(
                f"| {real_mb:.1f} MB | {rows:,} | {peak:.0f} MB | {peak - base:.0f} MB | "
                f"{(peak - base) / real_mb:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""The promotion guard's coverage figure on the backtest's dumped cutoffs (issue 27).

For each cutoff dumped by `python -m experiments --dump-intervals DIR`: the chosen kind's
interval fitted as the trainer fits it, applied to its test split (what `judge` reads),
and the share of test days inside [P10, P90] against `coverage_adjusted` — the days whose
lower bound is 0 (which sales cannot fall below) allowed for.

    .venv/bin/python bench/guard_coverage_bench.py DUMP_DIR [DUMP_DIR ...] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "jobs" / "trainer"), str(ROOT / "shared"), str(ROOT)]


def main() -> None:
    """Print and store each dumped cutoff's guard figures."""
    from experiments.recalibrate import QUANTILE_LEVELS, load_dump
    from trainer.judge.promotion import COVERAGE_BOUNDS
    from trainer.models.intervals import coverage_summary, fit_intervals

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dumps", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lo, hi = COVERAGE_BOUNDS
    rows = []
    for path in sorted(p for d in args.dumps for p in d.glob("*.pkl")):
        dump = load_dump(path)
        kind = dump["chosen"]
        cal = fit_intervals(dump["calibration"][kind], dump["naive"], levels=QUANTILE_LEVELS)
        test = coverage_summary(cal.apply(dump["test"][kind]))
        row = {
            "cutoff": dump["cutoff"],
            "kind": kind,
            "coverage": test["coverage"],
            "coverage_adjusted": test["coverage_adjusted"],
            "floor_share": test["floor_share"],
            "passes_raw": lo <= test["coverage"] <= hi,
            "passes_adjusted": lo <= test["coverage_adjusted"] <= hi,
        }
        rows.append(row)
        print(
            f"{row['cutoff']} {kind:10s} inside {row['coverage']:.3f} adjusted "
            f"{row['coverage_adjusted']:.3f} (lower bound 0 on {row['floor_share']:.0%} of days)",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""The promotion guard's coverage figure (issue 27): on the backtest's dumped cutoffs, and
its sampling error on simulated test splits.

Dumps: for each cutoff dumped by `python -m experiments --dump-intervals DIR`, the chosen
kind's interval fitted as the trainer fits it, applied to its test split (what `judge`
reads), and the share of test days inside [P10, P90] against `coverage_adjusted` — the
days whose lower bound is 0 (which sales cannot fall below) allowed for — with its
standard error `coverage_se` and the guard's verdict.

    .venv/bin/python bench/guard_coverage_bench.py DUMP_DIR [DUMP_DIR ...] [--out JSON]

Simulation (`--simulate`): test splits of count data whose true adjusted coverage is
known exactly (`simulated_split`), replicated `--reps` times per scenario (true coverage,
the errors' lag-1 autocorrelation, the share of a common day shock); per scenario the
mean and the between-replicate sd of `coverage_adjusted`, the mean `coverage_se` (its
ratio to that sd: 1 is a right standard error), and how often the guard blocks — the
guard with the standard error (`coverage_failure`, z = `COVERAGE_Z`) and the point rule
it replaces.

    nice -n 19 .venv/bin/python bench/guard_coverage_bench.py --simulate --reps 1000 \
        --out bench/results/guard_coverage_sim.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "jobs" / "trainer"), str(ROOT / "shared"), str(ROOT)]

ALPHA_HALF = 0.1  # alpha / 2 of the 80 % interval


def _ar1(rng: np.random.Generator, rows: int, days: int, phi: float) -> np.ndarray:
    """rows × days of stationary Gaussian AR(1) with unit variance."""
    x = np.empty((rows, days))
    x[:, 0] = rng.standard_normal(rows)
    innovation = np.sqrt(1.0 - phi * phi)
    for t in range(1, days):
        x[:, t] = phi * x[:, t - 1] + innovation * rng.standard_normal(rows)
    return x


def simulated_split(
    rng: np.random.Generator,
    *,
    coverage: float = 0.8,
    products: int = 118,
    days: int = 28,
    phi: float = 0.5,
    common: float = 0.0,
    intermittent: float = 0.6,
) -> pd.DataFrame:
    """A test split of daily sales (integers >= 0) with a constant point forecast and
    P10/P90 per product whose TRUE `coverage_adjusted` is exactly `coverage`.

    Sales are `max(0, round(mu + sigma * x))`, `x` Gaussian with unit variance: an AR(1)
    over days (lag-1 autocorrelation `phi`) per product, a `common` share of its
    variance a day shock all products share (itself AR(1), `phi`). The bounds sit on
    half-integers, so the share of integer sales inside is a Gaussian probability:
    a regular product has [j + 0.5, k + 0.5] with `mu` their midpoint and `sigma` such
    that the pair is `mu ± sigma·z`, `z = ndtri(0.5 + coverage / 2)`; an intermittent one
    (`intermittent` of the products) has P10 = 0 and P90 = k + 0.5 with
    P(sale <= k) = coverage + alpha/2, so its adjusted hit (hit less alpha/2 on a day
    whose lower bound is 0) also has expectation `coverage`."""
    if not 0.0 < coverage < 0.9 or not 0.0 <= common < 1.0 or not 0.0 <= phi < 1.0:
        raise ValueError("need 0 < coverage < 0.9, 0 <= common < 1 and 0 <= phi < 1")
    x = np.sqrt(1.0 - common) * _ar1(rng, products, days, phi)
    if common:
        x += np.sqrt(common) * _ar1(rng, 1, days, phi)
    lumpy = rng.random(products) < intermittent
    k = np.where(lumpy, rng.integers(1, 4, products), rng.integers(4, 40, products))
    width = np.minimum(rng.integers(3, 12, products), k)  # a regular P10 j + 0.5 >= 0.5
    j = np.where(lumpy, -1, k - width)
    z_two = ndtri(0.5 + coverage / 2)
    z_top = ndtri(coverage + ALPHA_HALF)
    sigma_regular = (k - j) / (2.0 * z_two)
    sigma_lumpy = k / (z_top + 1.2816) * rng.uniform(1.0, 1.5, products)
    sigma = np.where(lumpy, sigma_lumpy, sigma_regular)
    mu = np.where(lumpy, k + 0.5 - sigma_lumpy * z_top, (j + k + 1) / 2.0)
    sales = np.maximum(0.0, np.round(mu[:, None] + sigma[:, None] * x))
    p10 = np.where(lumpy, 0.0, j + 0.5)
    dates = pd.date_range("2018-06-04", periods=days, freq="D")
    return pd.DataFrame(
        {
            "product_id": np.repeat([f"P{i:04d}" for i in range(products)], days),
            "target_date": np.tile(dates, products),
            "actual": sales.ravel(),
            "predicted": np.repeat(mu, days),
            "p10": np.repeat(p10, days),
            "p90": np.repeat(k + 0.5, days),
        }
    )


def simulate_scenario(reps: int, seed: int, **split: Any) -> dict[str, Any]:
    """The guard's figures over `reps` simulated splits of one scenario (seeded)."""
    from trainer.judge.promotion import COVERAGE_BOUNDS, COVERAGE_Z, coverage_failure
    from trainer.models.intervals import coverage_summary

    rng = np.random.default_rng(seed)
    cov, se, blocked, blocked_point = [], [], 0, 0
    for _ in range(reps):
        summary = coverage_summary(simulated_split(rng, **split))
        c, s = summary["coverage_adjusted"], summary["coverage_se"]
        cov.append(c)
        se.append(s)
        blocked += coverage_failure(c, COVERAGE_BOUNDS, se=s, z=COVERAGE_Z) is not None
        blocked_point += coverage_failure(c, COVERAGE_BOUNDS) is not None
    sd = float(np.std(cov, ddof=1)) if reps > 1 else float("nan")
    return {
        **split,
        "reps": reps,
        "seed": seed,
        "mean_coverage": round(float(np.mean(cov)), 5),
        "sd_coverage": round(sd, 5),
        "mean_se": round(float(np.mean(se)), 5),
        "se_over_sd": round(float(np.mean(se)) / sd, 3) if sd > 0 else None,
        "blocked_share": blocked / reps,
        "blocked_share_point_rule": blocked_point / reps,
    }


SCENARIOS = [
    {"coverage": c, "phi": phi, "common": common, "days": days}
    for days in (28, 56)
    for c in (0.80, 0.75, 0.72, 0.65)
    for phi, common in ((0.0, 0.0), (0.5, 0.0), (0.8, 0.0), (0.5, 0.05), (0.5, 0.2), (0.8, 0.2))
]


def simulate(reps: int, out: Path | None) -> list[dict[str, Any]]:
    """Every scenario of `SCENARIOS`; printed, and stored at `out` with CPU and load."""
    rows = []
    start_cpu = resource.getrusage(resource.RUSAGE_SELF)
    load = os.getloadavg()
    start = time.monotonic()
    for i, scenario in enumerate(SCENARIOS):
        row = simulate_scenario(reps, seed=1000 + i, **scenario)
        rows.append(row)
        print(json.dumps(row), flush=True)
    end_cpu = resource.getrusage(resource.RUSAGE_SELF)
    meta = {
        "cpu_s": round(
            end_cpu.ru_utime - start_cpu.ru_utime + end_cpu.ru_stime - start_cpu.ru_stime, 1
        ),
        "wall_s": round(time.monotonic() - start, 1),
        "load_before": [round(v, 2) for v in load],
        "load_after": [round(v, 2) for v in os.getloadavg()],
    }
    if out:
        out.write_text(json.dumps({"meta": meta, "scenarios": rows}, indent=1) + "\n")
    return rows


def main() -> None:
    """Print and store each dumped cutoff's guard figures, or the simulation's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dumps", nargs="*", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--simulate", action="store_true")
    parser.add_argument("--reps", type=int, default=1000)
    args = parser.parse_args()
    if args.simulate:
        if args.reps < 2:
            parser.error("--reps must be >= 2")
        simulate(args.reps, args.out)
        return
    if not args.dumps:
        parser.error("give dump folders, or --simulate")
    from experiments.recalibrate import QUANTILE_LEVELS, load_dump
    from trainer.judge.promotion import COVERAGE_BOUNDS, coverage_failure
    from trainer.models.intervals import coverage_summary, fit_intervals

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
            "coverage_se": test["coverage_se"],
            "passes_guard": coverage_failure(
                test["coverage_adjusted"], COVERAGE_BOUNDS, se=test["coverage_se"]
            )
            is None,
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

"""The interval-coverage test of the health check (issue 27): calibration and power.

Synthetic forecast errors, Gaussian AR(1) with phi 0.5 (and 0 and 0.7), a different sd
per product (log-uniform over 1..20 units), and a *calibrated* served interval: the
error's stationary 10 % and 90 % quantiles around the point (what the trainer's
conformal calibration aims at). In each window (30 days) 5 % of the products get a
doubled error spread. Each product's coverage p-value (`forecastguard.health.coverage`,
effective sample size under serial dependence) goes through BH at FDR 0.05:

- `coverage only`: the coverage p-values alone;
- `check`: the full health check (`check.compute_health` on `window_from_frames`, with
  the served P10/P90 in the predictions and the default REFERENCE_DAYS reference, 90
  days before the window; `--reference-days`), where
  the coverage p-values join the error-drift tests' p-values (Bonferroni per product)
  before BH, so this is what the check reports.

Null rows (no product changed): the share of windows with any alarm (FWER-like; BH
controls FDR, which equals it under the global null) and the per-product false
positive rate. The goal: recall >= 0.6 at precision >= 0.9 at phi 0.5.

    nice -n 10 .venv/bin/python bench/coverage_bench.py [--windows 20] [--products 1000]
        [--check-windows 5] [--reference-days 90] [--part all|coverage|check]
        [--json out.json]

The changed products' spread doubles on the window's first day; the reference days and
the history before them keep the calibrated spread.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from forecastguard.config import Settings
from forecastguard.health import stats
from forecastguard.health.coverage import coverage_tests

Z90 = 1.2815515655446004  # the standard normal's 90 % quantile
DAYS = 30
SHARE = 0.05
LEVEL = 100.0  # point forecasts far from 0, so the clip at 0 never matters
REFERENCE_DAYS = Settings().reference_days  # the check's default reference (90 days)


def ar1(rng: np.random.Generator, n: int, days: int, phi: float) -> np.ndarray:
    """(n, days) stationary AR(1) with unit marginal sd."""
    shocks = rng.standard_normal((n, days)) * np.sqrt(1 - phi**2)
    x = np.empty((n, days))
    x[:, 0] = rng.standard_normal(n)
    for t in range(1, days):
        x[:, t] = phi * x[:, t - 1] + shocks[:, t]
    return x


def window(
    rng: np.random.Generator,
    products: int,
    phi: float,
    changed: float,
    days: int,
    before: int | None = None,
):
    """(sd, changed mask, errors over `before` + `days` days): errors sd-scaled, the
    changed products' last `days` (the window) doubled; `before` defaults to `days`."""
    before = days if before is None else before
    sd = np.exp(rng.uniform(0, np.log(20), products))
    drifted = rng.random(products) < changed
    e = ar1(rng, products, before + days, phi) * sd[:, None]
    e[drifted, before:] *= 2.0
    return sd, drifted, e


def scores(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float, int]:
    """(recall, precision, false positives)."""
    tp = int((flagged & truth).sum())
    fp = int((flagged & ~truth).sum())
    recall = tp / truth.sum() if truth.sum() else float("nan")
    precision = tp / (tp + fp) if tp + fp else float("nan")
    return recall, precision, fp


def coverage_only(windows: int, products: int, phi: float, changed: float, seed: int) -> dict:
    """BH on the coverage p-values alone."""
    rng = np.random.default_rng(seed)
    rec, prec, fps, alarms, covs = [], [], 0, 0, []
    for _ in range(windows):
        sd, truth, e = window(rng, products, phi, changed, DAYS)
        y = LEVEL + e[:, DAYS:]
        lo = LEVEL - Z90 * sd[:, None] + 0 * y
        hi = LEVEL + Z90 * sd[:, None] + 0 * y
        t = coverage_tests(y, np.full_like(y, LEVEL), lo, hi, errors=e)  # phi: 60 days
        flagged = stats.benjamini_hochberg(t.pvalue) <= 0.05
        r, p, fp = scores(flagged, truth)
        rec.append(r)
        prec.append(p)
        fps += fp
        alarms += bool(flagged.any())
        covs.append(float(np.nanmean(t.coverage[~truth])))
    return {
        "phi": phi,
        "changed": changed,
        "windows": windows,
        "recall": float(np.nanmean(rec)) if changed else None,
        "precision": float(np.nanmean(prec)) if changed else None,
        "alarm_share": alarms / windows,
        "fp_rate": fps / (windows * products),
        "null_coverage": float(np.mean(covs)),
    }


def check_window(
    rng: np.random.Generator,
    products: int,
    phi: float,
    changed: float,
    reference_days: int = REFERENCE_DAYS,
):
    """The full check on one synthetic window: (result, truth)."""
    from forecastguard.health.check import HealthParams, compute_health
    from forecastguard.health.window import history_days, window_from_frames

    as_of = date(2026, 6, 30)
    before = history_days(DAYS, reference_days or None)  # the days the check reads before
    start = as_of - timedelta(days=before + DAYS - 1)
    days = before + DAYS
    sd, truth, e = window(rng, products, phi, changed, DAYS, before)
    ids = np.array([f"P{i:05d}" for i in range(products)], dtype=object)
    dates = pd.date_range(start, as_of)
    actual = np.clip(LEVEL + e, 0, None)
    sales = pd.DataFrame(
        {
            "product_id": np.repeat(ids, days),
            "sale_date": np.tile(dates, products),
            "units_sold": actual.reshape(-1),
        }
    )
    preds = pd.DataFrame(
        {
            "product_id": np.repeat(ids, days),
            "target_date": np.tile(dates, products),
            "predicted_units": LEVEL,
            "predicted_p10": np.repeat(LEVEL - Z90 * sd, days),
            "predicted_p90": np.repeat(LEVEL + Z90 * sd, days),
            "model_version": "m1",
        }
    )
    data = window_from_frames(as_of, DAYS, sales, preds, reference_days=reference_days or None)
    result = compute_health(data, HealthParams())
    order = pd.Index(ids).get_indexer(result.products["product_id"])
    return result, truth[order]


def full_check(
    windows: int,
    products: int,
    phi: float,
    changed: float,
    seed: int,
    reference_days: int = REFERENCE_DAYS,
) -> dict:
    """The health check's verdict (coverage joined with the error-drift tests)."""
    rng = np.random.default_rng(seed)
    rec, prec, fps, alarms, by_cov, secs = [], [], 0, 0, 0, []
    for _ in range(windows):
        t0 = time.perf_counter()
        result, truth = check_window(rng, products, phi, changed, reference_days)
        secs.append(time.perf_counter() - t0)
        flagged = result.products["drift"].to_numpy(bool)
        r, p, fp = scores(flagged, truth)
        rec.append(r)
        prec.append(p)
        fps += fp
        alarms += bool(flagged.any())
        by_cov += int((result.products["drift_test"] == "coverage").sum())
    return {
        "phi": phi,
        "changed": changed,
        "windows": windows,
        "recall": float(np.nanmean(rec)) if changed else None,
        "precision": float(np.nanmean(prec)) if changed else None,
        "alarm_share": alarms / windows,
        "fp_rate": fps / (windows * products),
        "found_by_coverage": by_cov,
        "reference_days": reference_days,
        "check_s": float(np.median(secs)),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the bench; print a Markdown table (and write JSON with --json)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=20)
    p.add_argument("--products", type=int, default=1000)
    p.add_argument("--check-windows", type=int, default=5)
    p.add_argument("--seed", type=int, default=27)
    p.add_argument(
        "--reference-days",
        type=int,
        default=REFERENCE_DAYS,
        help="the check's reference days before the window (0: the window's length)",
    )
    p.add_argument("--part", choices=("all", "coverage", "check"), default="all")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.reference_days < 0:
        p.error(f"--reference-days must be >= 0, got {args.reference_days}")
    rows = []
    for phi in (0.0, 0.5, 0.7) if args.part in ("all", "coverage") else ():
        for changed in (0.0, SHARE):
            rows.append(
                {"test": "coverage only"}
                | coverage_only(args.windows, args.products, phi, changed, args.seed)
            )
    for changed in (0.0, SHARE) if args.part in ("all", "check") else ():
        rows.append(
            {"test": "check"}
            | full_check(
                args.check_windows, args.products, 0.5, changed, args.seed, args.reference_days
            )
        )
    cols = ["test", "phi", "changed", "windows", "recall", "precision", "alarm_share", "fp_rate"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [
            f"{r[c]:.3f}" if isinstance(r[c], float) else ("–" if r[c] is None else str(r[c]))
            for c in cols
        ]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

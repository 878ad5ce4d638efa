"""The interval-coverage tests of the health check (issue 27): calibration and power.

Synthetic forecast errors with a different scale per product (log-uniform over 1..20
units) and a *calibrated* served interval: the errors' stationary 10 % and 90 %
quantiles around the point (what the trainer's conformal calibration aims at). In each
window (30 days) 5 % of the products get a doubled error spread from the window's first
day; the reference days and the history before them keep the calibrated spread.

Cases (`--cases`; none of them tuned on except `gauss` at phi 0.5, seeds 27 and 2028,
where the scale test's cap was chosen):

- gauss: Gaussian AR(1) errors, phi 0.5 (and 0 and 0.7 with `--phis`);
- ar2: AR(2) errors (0.6, 0.2: lag-1 correlation 0.75, slower decay than AR(1));
- t3, t5: AR(1) errors with t(3) / t(5) shocks;
- t3_common: t(3) AR(1) errors plus a daily shock common to all products (30 % of the
  variance; the interval calibrated on the total);
- zip: zero-inflated Poisson counts (Gaussian-copula AR(1) dependence; 0-60 % structural
  zeros, mean 0.5-20), the point their mean and the interval their discrete 10 % and
  90 % quantiles (P10 = 0 for most); a doubled spread doubles the deviations from the
  mean (rounded, at least 0);
- level: error sd proportional to a slowly varying level (log-level AR(1) 0.98, sd 0.4),
  the interval following the level (the trainer's level factor);
- long: Gaussian AR(1) errors, the interval the empirical 10 % and 90 % quantiles of the
  product's own 365 earlier days (calibrated on a long history, not on the true law).

Tests, each with BH at FDR 0.05 over the window's products:

- `hits, normal tail (before)`: the coverage test before this change (normal
  approximation with a quarter-hit continuity correction), for comparison;
- `hits`: the hit count's beta-binomial tails with the empirical null
  (`coverage.calibrated_pvalues`);
- `scale`: the scale test against the interval's yardstick with the empirical null;
- `coverage`: the product's coverage p-value as the check uses it (the Bonferroni of
  the two, either alone where the other did not run: `coverage.global_pvalues`);
- `check`: the full health check (`check.compute_health` on `window_from_frames`, the
  served P10/P90 in the predictions, the default REFERENCE_DAYS reference) where the
  coverage p-value joins the error-drift tests' (Bonferroni, half each) before BH.

Null rows (no product changed): the share of windows with any alarm (BH controls FDR,
which equals it under the global null; goal <= 0.05) and the per-product false positive
rate. Power rows: recall and precision (goal: recall >= 0.6 at precision >= 0.9 for the
check at phi 0.5).

    nice -n 10 .venv/bin/python bench/coverage_bench.py [--windows 20] [--products 1000]
        [--check-windows 5] [--reference-days 90] [--part all|coverage|check]
        [--cases gauss,ar2,...] [--check-cases gauss] [--phis 0.5] [--seed 27]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import ndtr

from forecastguard.config import Settings
from forecastguard.health import coverage, stats

Z90 = 1.2815515655446004  # the standard normal's 90 % quantile
DAYS = 30
SHARE = 0.05
LEVEL = 100.0  # point forecasts far from 0, so the clip at 0 rarely matters
REFERENCE_DAYS = Settings().reference_days  # the check's default reference (90 days)
BURN = 60  # days an AR process runs before it is used (stationary start)
LONG_HISTORY = 365  # the `long` case's calibration days
CASES = ("gauss", "ar2", "t3", "t5", "t3_common", "zip", "level", "long")


def _ar(rng: np.random.Generator, n: int, days: int, phi: float, shocks: str) -> np.ndarray:
    """(n, days) AR(1) (or `ar2`) after BURN days, shocks normal or t(3)/t(5)."""
    total = days + BURN
    if shocks == "t3":
        e = rng.standard_t(3, (n, total))
    elif shocks == "t5":
        e = rng.standard_t(5, (n, total))
    else:
        e = rng.standard_normal((n, total))
    x = np.zeros((n, total))
    for t in range(1, total):
        x[:, t] = (
            (0.6 * x[:, t - 1] + 0.2 * x[:, t - 2]) if shocks == "ar2" else (phi * x[:, t - 1])
        )
        x[:, t] += e[:, t]
    return x[:, BURN:]


def _unit(rng: np.random.Generator, n: int, days: int, case: str, phi: float) -> np.ndarray:
    """Unit-scale errors of a continuous case (before the per-product scale)."""
    if case == "t3_common":
        own = _ar(rng, n, days, phi, "t3") / np.sqrt(3.0 / (1 - phi**2))
        common = _ar(rng, 1, days, phi, "gauss") / np.sqrt(1.0 / (1 - phi**2))
        return np.sqrt(0.7) * own + np.sqrt(0.3) * common
    shocks = {"gauss": "gauss", "long": "gauss", "ar2": "ar2", "t3": "t3", "t5": "t5"}[case]
    return _ar(rng, n, days, phi, shocks)


@lru_cache(maxsize=64)
def stationary_quantiles(case: str, phi: float) -> tuple[float, float]:
    """The 10 % and 90 % quantiles of a case's unit errors (simulated once, seed 99)."""
    if case in ("gauss", "long", "level"):
        sd = 1.0 / np.sqrt(1 - phi**2)
        return -Z90 * sd, Z90 * sd
    x = _unit(np.random.default_rng(99), 4000, 250, case, phi)
    return float(np.quantile(x, 0.1)), float(np.quantile(x, 0.9))


def simulate(
    rng: np.random.Generator, case: str, products: int, phi: float, changed: float, days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(actual, point, p10, p90, changed mask), products × `days`; the last DAYS days are
    the window, where the changed products' spread is doubled."""
    before = days - DAYS
    drifted = rng.random(products) < changed
    if case == "zip":
        return (*_zip(rng, products, days, phi, drifted), drifted)
    scale = np.exp(rng.uniform(0, np.log(20), products))[:, None]
    if case == "level":
        level = LEVEL * np.exp(0.4 * _ar(rng, products, days, 0.98, "gauss") * np.sqrt(1 - 0.98**2))
        sd = scale * level / LEVEL
        e = _ar(rng, products, days, phi, "gauss") * np.sqrt(1 - phi**2) * sd
        e[drifted, before:] *= 2.0
        q = Z90 * sd
        return level + e, level, level - q, level + q, drifted
    extra = LONG_HISTORY if case == "long" else 0
    x = _unit(rng, products, days + extra, case, phi)
    if case == "long":
        hist, x = x[:, :extra], x[:, extra:]
        q10, q90 = np.quantile(hist, 0.1, axis=1)[:, None], np.quantile(hist, 0.9, axis=1)[:, None]
    else:
        q10, q90 = stationary_quantiles(case, phi)
    e = x * scale
    e[drifted, before:] *= 2.0
    point = np.full((products, days), LEVEL)
    return point + e, point, point + q10 * scale + 0 * e, point + q90 * scale + 0 * e, drifted


def _zip(
    rng: np.random.Generator, n: int, days: int, phi: float, drifted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lam = np.exp(rng.uniform(np.log(0.5), np.log(20), n))[:, None]
    zero = rng.uniform(0.0, 0.6, n)[:, None]
    u = ndtr(_ar(rng, n, days, phi, "gauss") * np.sqrt(1 - phi**2))
    pois = np.clip((u - zero) / (1 - zero), 0, 1 - 1e-12)
    y = np.where(u < zero, 0.0, sps.poisson.ppf(pois, lam))
    mean = (1 - zero) * lam + 0 * y
    before = days - DAYS
    w = (drifted[:, None]) & (np.arange(days) >= before)[None, :]
    y = np.where(w, np.clip(np.round(mean + 2.0 * (y - mean)), 0, None), y)

    def quantile(p: float) -> np.ndarray:
        return np.where(
            p <= zero, 0.0, sps.poisson.ppf(np.clip((p - zero) / (1 - zero), 0, 1), lam)
        )

    return y, mean, quantile(0.1) + 0 * y, quantile(0.9) + 0 * y


def scores(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float, int]:
    """(recall, precision, false positives)."""
    tp = int((flagged & truth).sum())
    fp = int((flagged & ~truth).sum())
    recall = tp / truth.sum() if truth.sum() else float("nan")
    precision = tp / (tp + fp) if tp + fp else float("nan")
    return recall, precision, fp


def normal_tail_pvalues(t: coverage.CoverageTests, days: int) -> np.ndarray:
    """The coverage test before this change: normal, a quarter-hit continuity correction."""
    se = np.sqrt(coverage.NOMINAL * (1 - coverage.NOMINAL) / (t.n / t.vf))
    gap = np.clip(np.abs(t.coverage - coverage.NOMINAL) - 0.25 / t.n, 0.0, None)
    return np.minimum(1.0, 2.0 * ndtr(-gap / se))


def coverage_pvalues(
    actual: np.ndarray, point: np.ndarray, p10: np.ndarray, p90: np.ndarray
) -> dict[str, np.ndarray]:
    """Every test's p-values on one window (the last DAYS days; the days before are the
    reference, as the check reads them)."""
    w = slice(-DAYS, None)
    errors = actual - point
    t = coverage.coverage_tests(actual[:, w], point[:, w], p10[:, w], p90[:, w], errors=errors)
    ref = errors[:, :-DAYS][:, -REFERENCE_DAYS:]
    phi = coverage.lag1_autocorrelation(errors)
    sc = coverage.scale_tests(actual[:, w], point[:, w], p10[:, w], p90[:, w], ref, phi)
    rows = pd.DataFrame(
        {
            "coverage_inside": t.inside,
            "coverage_strict": t.strictly_inside,
            "coverage_n": t.n,
            "coverage_vf": t.vf,
            "coverage_scale_ratio": sc.ratio,
            "coverage_scale_dof_w": sc.dof_window,
            "coverage_scale_dof_r": sc.dof_reference,
            "coverage_pvalue": t.pvalue,
        }
    )
    hits, _ = coverage.calibrated_pvalues(t.inside, t.strictly_inside, t.n, t.vf)
    scale, _ = coverage.calibrated_scale_pvalues(sc.ratio, sc.dof_window, sc.dof_reference)
    joined, _ = coverage.global_pvalues(rows)
    return {
        "hits, normal tail (before)": normal_tail_pvalues(t, DAYS),
        "hits": hits,
        "scale": scale,
        "coverage": joined,
    }


def coverage_only(
    case: str, windows: int, products: int, phi: float, changed: float, seed: int
) -> list[dict]:
    """BH on each test's p-values alone, `windows` windows of one case."""
    rng = np.random.default_rng([seed, sum(map(ord, case)), int(phi * 100), int(changed * 100)])
    acc: dict[str, dict] = {}
    days = REFERENCE_DAYS + DAYS
    for _ in range(windows):
        actual, point, p10, p90, truth = simulate(rng, case, products, phi, changed, days)
        for name, p in coverage_pvalues(actual, point, p10, p90).items():
            flagged = stats.benjamini_hochberg(p) <= 0.05
            r, pr, fp = scores(flagged, truth)
            a = acc.setdefault(name, {"rec": [], "prec": [], "fp": 0, "alarms": 0, "tested": 0})
            a["rec"].append(r)
            a["prec"].append(pr)
            a["fp"] += fp
            a["alarms"] += bool(flagged.any())
            a["tested"] += int(np.isfinite(p).sum())
    return [
        _row(name, case, phi, changed, windows, products, a["rec"], a["prec"], a["fp"], a["alarms"])
        | {"tested_share": a["tested"] / (windows * products)}
        for name, a in acc.items()
    ]


def _row(test, case, phi, changed, windows, products, rec, prec, fps, alarms) -> dict:
    return {
        "test": test,
        "case": case,
        "phi": phi,
        "changed": changed,
        "windows": windows,
        "recall": float(np.nanmean(rec)) if changed else None,
        "precision": float(np.nanmean(prec)) if changed else None,
        "alarm_share": alarms / windows,
        "fp_rate": fps / (windows * products),
    }


def _frames(
    actual: np.ndarray, point: np.ndarray, p10: np.ndarray, p90: np.ndarray, dates: pd.Index
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """(product ids, sales, forecasts with their interval) of simulated (products, days)
    arrays over `dates`, as the tables hold them."""
    products, days = actual.shape
    ids = np.array([f"P{i:05d}" for i in range(products)], dtype=object)
    sales = pd.DataFrame(
        {
            "product_id": np.repeat(ids, days),
            "sale_date": np.tile(dates, products),
            "units_sold": np.clip(actual, 0, None).reshape(-1),
        }
    )
    preds = pd.DataFrame(
        {
            "product_id": np.repeat(ids, days),
            "target_date": np.tile(dates, products),
            "predicted_units": point.reshape(-1),
            "predicted_p10": p10.reshape(-1),
            "predicted_p90": p90.reshape(-1),
            "model_version": "m1",
        }
    )
    return ids, sales, preds


def check_window(
    rng: np.random.Generator,
    case: str,
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
    actual, point, p10, p90, truth = simulate(rng, case, products, phi, changed, days)
    ids, sales, preds = _frames(actual, point, p10, p90, pd.date_range(start, as_of))
    data = window_from_frames(as_of, DAYS, sales, preds, reference_days=reference_days or None)
    result = compute_health(data, HealthParams())
    order = pd.Index(ids).get_indexer(result.products["product_id"])
    return result, truth[order]


def full_check(
    case: str,
    windows: int,
    products: int,
    phi: float,
    changed: float,
    seed: int,
    reference_days: int = REFERENCE_DAYS,
) -> dict:
    """The health check's verdict (coverage joined with the error-drift tests)."""
    rng = (
        np.random.default_rng(seed)
        if case == "gauss"
        else np.random.default_rng([seed, sum(map(ord, case)), int(phi * 100)])
    )
    rec, prec, fps, alarms, by_cov, secs = [], [], 0, 0, 0, []
    for _ in range(windows):
        t0 = time.process_time()
        result, truth = check_window(rng, case, products, phi, changed, reference_days)
        secs.append(time.process_time() - t0)
        flagged = result.products["drift"].to_numpy(bool)
        r, p, fp = scores(flagged, truth)
        rec.append(r)
        prec.append(p)
        fps += fp
        alarms += bool(flagged.any())
        by_cov += int((result.products["drift_test"] == "coverage").sum())
    return _row("check", case, phi, changed, windows, products, rec, prec, fps, alarms) | {
        "found_by_coverage": by_cov,
        "reference_days": reference_days,
        "check_cpu_s": float(np.median(secs)),
    }


def time_check(products: int, seed: int, repeats: int = 3) -> dict:
    """CPU seconds of `compute_health` alone (best of `repeats`) on one window of
    `products` Gaussian AR(1) products with served intervals (90-day reference), and the
    process's peak RSS: the coverage tests' cost at 10,000 products."""
    import os
    import resource

    from forecastguard.health.check import HealthParams, compute_health
    from forecastguard.health.window import history_days, window_from_frames

    rng = np.random.default_rng(seed)
    as_of = date(2026, 6, 30)
    before = history_days(DAYS, REFERENCE_DAYS)
    days = before + DAYS
    actual, point, p10, p90, _ = simulate(rng, "gauss", products, 0.5, SHARE, days)
    dates = pd.date_range(as_of - timedelta(days=days - 1), as_of)
    _, sales, preds = _frames(actual, point, p10, p90, dates)
    data = window_from_frames(as_of, DAYS, sales, preds, reference_days=REFERENCE_DAYS)
    cpu = []
    for _ in range(repeats):
        t0 = time.process_time()
        compute_health(data, HealthParams())
        cpu.append(time.process_time() - t0)
    return {
        "products": products,
        "reference_days": REFERENCE_DAYS,
        "check_cpu_s": min(cpu),
        "check_cpu_s_runs": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the bench; print a Markdown table (and write JSON with --json)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=20)
    p.add_argument("--products", type=int, default=1000)
    p.add_argument("--check-windows", type=int, default=5)
    p.add_argument("--seed", type=int, default=27)
    p.add_argument("--cases", default="gauss", help=f"comma-separated, of {','.join(CASES)}")
    p.add_argument("--check-cases", default="gauss", help="the cases the full check runs")
    p.add_argument("--phis", default="0.5", help="comma-separated phi of the AR(1) cases")
    p.add_argument(
        "--reference-days",
        type=int,
        default=REFERENCE_DAYS,
        help="the check's reference days before the window (0: the window's length)",
    )
    p.add_argument("--part", choices=("all", "coverage", "check", "time"), default="all")
    p.add_argument("--time-products", type=int, default=10_000, help="products of --part time")
    p.add_argument("--check-null", action="store_true", help="only null rows in the check part")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.reference_days < 0:
        p.error(f"--reference-days must be >= 0, got {args.reference_days}")
    if args.part == "time":
        row = time_check(args.time_products, args.seed)
        print(json.dumps(row), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(row, indent=2))
        return 0
    cases = [c for c in args.cases.split(",") if c]
    check_cases = [c for c in args.check_cases.split(",") if c]
    unknown = sorted(set(cases + check_cases) - set(CASES))
    if unknown:
        p.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    phis = [float(x) for x in args.phis.split(",") if x]
    rows: list[dict] = []
    for case in cases if args.part in ("all", "coverage") else ():
        for phi in phis if case in ("gauss", "t3", "t5", "long", "level", "zip") else (0.5,):
            for changed in (0.0, SHARE):
                rows += coverage_only(case, args.windows, args.products, phi, changed, args.seed)
                _print(rows[-4:])
    for case in check_cases if args.part in ("all", "check") else ():
        for changed in (0.0,) if args.check_null else (0.0, SHARE):
            rows.append(
                full_check(
                    case,
                    args.check_windows,
                    args.products,
                    0.5,
                    changed,
                    args.seed,
                    args.reference_days,
                )
            )
            _print(rows[-1:])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"argv": argv if argv is not None else __import__("sys").argv[1:]}
        args.json.write_text(json.dumps({"settings": meta, "rows": rows}, indent=2))
    return 0


_COLS = [
    "test",
    "case",
    "phi",
    "changed",
    "windows",
    "recall",
    "precision",
    "alarm_share",
    "fp_rate",
]


def _print(rows: list[dict]) -> None:
    for r in rows:
        cells = [
            f"{r[c]:.3f}" if isinstance(r[c], float) else ("–" if r[c] is None else str(r[c]))
            for c in _COLS
        ]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

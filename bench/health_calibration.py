"""Calibration and power of the health check's drift test on realistic forecast errors.

Synthetic part (seeded): every "window" is 1,000 products with 30 reference days (the
previous window) and 30 window days of forecast errors. 80 % of the products have
AR(1) errors with coefficient phi (Gaussian or Student-t(5) innovations, spreads varying
over two orders of magnitude); 20 % are intermittent: Poisson sales of 0.1-1.5 units a
day around an AR(1) log-intensity, forecast by their mean. With `--weekly`, every product
also has its own weekly pattern in the errors (0.5 error sd; +-30 % of the intensity for
intermittent products). Under the null nothing changes at the window start; BH at
FDR_ALPHA then flags a window (any product) about alpha of the time if the p-values are
valid in their far tail. Power: 5 % of the products get a level shift (k error sd) or a
spread ratio r in the window, at phi = 0.5; recall, precision and the kind label are
counted, with today's KS on the raw errors beside.

Real part: the pasta data (118 products, 2014-2018), a same-weekday-mean forecaster
refreshed every 28 days, the check run every 7 days over 2015-2018 with a 30-day window
against the previous 30 days; the alarming weeks and products, old KS and new.

    nice -n 10 .venv/bin/python bench/health_calibration.py [--windows 200] [--products 1000]
        [--part null,power,pasta] [--min-effect 0.5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT / "jobs" / "trainer"), str(ROOT)]

from forecastguard.health import stats  # noqa: E402
from forecastguard.health.check import effect_passes  # noqa: E402

DAYS = 30
ALPHA = 0.05
INTERMITTENT = 0.2


def ar1(rng: np.random.Generator, phi: float, shape: tuple[int, int], heavy: np.ndarray):
    """Stationary AR(1) series with unit marginal variance (rows with `heavy`: t5 shocks)."""
    _, t = shape
    shocks = rng.standard_normal(shape)
    if heavy.any():
        k = int(heavy.sum())
        shocks[heavy] = rng.standard_t(5, (k, t)) / math.sqrt(5 / 3)
    out = np.empty(shape)
    out[:, 0] = shocks[:, 0]
    c = math.sqrt(1 - phi * phi)
    for j in range(1, t):
        out[:, j] = phi * out[:, j - 1] + c * shocks[:, j]
    return out


def null_errors(
    rng: np.random.Generator, n: int, phi: float, weekly: bool, days: int = DAYS
) -> tuple[np.ndarray, np.ndarray]:
    """(errors (n x 2*days), marginal sd per product) of healthy forecasts."""
    t = 2 * days
    inter = rng.random(n) < INTERMITTENT
    heavy = rng.random(n) < 0.5
    sd = np.exp(rng.normal(np.log(5.0), 1.0, n))
    base = ar1(rng, phi, (n, t), heavy)
    wd = np.arange(t) % 7
    pattern = rng.standard_normal((n, 7))
    pattern -= pattern.mean(axis=1, keepdims=True)
    pattern /= pattern.std(axis=1, keepdims=True)
    errors = base * sd[:, None]
    if weekly:
        errors += 0.5 * sd[:, None] * pattern[:, wd]
    # Intermittent products: Poisson sales around an AR(1) log-intensity, forecast by lam0.
    k = int(inter.sum())
    if k:
        lam0 = rng.uniform(0.1, 1.5, k)
        latent = ar1(rng, phi, (k, t), np.zeros(k, bool)) * 0.5
        lam = lam0[:, None] * np.exp(latent - 0.125)
        if weekly:
            lam *= 1 + 0.3 * np.clip(pattern[inter][:, wd], -2, 2) / 2
        errors[inter] = rng.poisson(lam) - lam0[:, None]
        sd[inter] = errors[inter].std(axis=1)
    null_errors.last_types = np.where(inter, "intermittent", np.where(heavy, "t5", "gaussian"))
    return errors, sd


def new_pvalues(errors: np.ndarray, min_effect: float, days: int = DAYS) -> dict[str, np.ndarray]:
    """The new drift test on (products x 2*days) errors: p-values, kinds, effects."""
    t = stats.drift_tests(
        errors[:, :days],
        errors[:, days:],
        contiguous=np.ones(len(errors), bool),
        weekday=np.arange(2 * days) % 7,
    )
    cut = stats.bh_cutoff(t.pvalue, ALPHA) if len(t.pvalue) <= 1000 else 0.0
    return {
        "p": t.pvalue,
        "kind": stats.drift_kind_index(t, cut),
        "effect_ok": effect_passes(t, min_effect),
        "bias_shift_sd": t.bias_shift_sd,
        "spread_ratio": t.spread_ratio,
    }


def old_pvalues(errors: np.ndarray, days: int = DAYS) -> np.ndarray:
    """Today's test (before issue 13): KS of the raw window errors against the reference."""
    g = len(errors)
    codes = np.repeat(np.arange(g), days)
    s = stats.two_sample(codes, errors[:, days:].ravel(), codes, errors[:, :days].ravel(), g)
    return stats.ks_pvalues(s, 7)


def _flag(p: np.ndarray, batch: int, products: int) -> np.ndarray:
    """BH at ALPHA within every window of `products` rows."""
    q = np.concatenate(
        [stats.benjamini_hochberg(p[i : i + products]) for i in range(0, batch, products)]
    )
    return q <= ALPHA


def null_part(
    windows: int,
    products: int,
    min_effect: float,
    seed: int,
    old_windows: int = 50,
    weeklies: tuple[bool, ...] = (False, True),
) -> list[dict]:
    """False alarms without drift, for every (phi, weekly) row; today's KS on the first
    `old_windows` windows of each row only (it is slow and far off anyway)."""
    rows = []
    for weekly in weeklies:
        for phi in (0.0, 0.3, 0.5, 0.7):
            rng = np.random.default_rng([seed, int(phi * 10), int(weekly)])
            alarms = {"new": 0, "new_effect": 0, "old": 0}
            flagged = {"new": 0, "new_effect": 0, "old": 0}
            start = time.perf_counter()
            per_batch = max(1, 20_000 // products)
            done = 0
            while done < windows:
                w = min(per_batch, windows - done)
                errors, _ = null_errors(rng, w * products, phi, weekly)
                new = new_pvalues(errors, min_effect)
                f_new = _flag(new["p"], w * products, products)
                f_eff = f_new & new["effect_ok"]
                pairs = [("new", f_new), ("new_effect", f_eff)]
                if done < old_windows:
                    pairs.append(("old", _flag(old_pvalues(errors), w * products, products)))
                for name, f in pairs:
                    per_window = f.reshape(w, products).sum(axis=1)
                    alarms[name] += int((per_window > 0).sum())
                    flagged[name] += int(per_window.sum())
                done += w
            se = math.sqrt(ALPHA * (1 - ALPHA) / windows)
            row = {
                "phi": phi,
                "weekly": weekly,
                "windows": windows,
                **{f"alarm_share_{k}": alarms[k] / _n(k, windows, old_windows) for k in alarms},
                **{
                    f"flagged_per_window_{k}": flagged[k] / _n(k, windows, old_windows)
                    for k in flagged
                },
                "old_windows": min(old_windows, windows),
                "bound": ALPHA + 2 * se,
                "seconds": round(time.perf_counter() - start, 1),
            }
            rows.append(row)
            print(
                f"phi {phi:.1f} weekly {weekly!s:5s}: windows alarming new {row['alarm_share_new']:.3f}"
                f" (with min effect {row['alarm_share_new_effect']:.3f}), old KS "
                f"{row['alarm_share_old']:.3f}; flagged/window new "
                f"{row['flagged_per_window_new']:.2f}, old {row['flagged_per_window_old']:.2f}"
                f"  [{row['seconds']} s]",
                flush=True,
            )
    return rows


def _n(name: str, windows: int, old_windows: int) -> int:
    return min(windows, old_windows) if name == "old" else windows


def power_part(
    windows: int, products: int, min_effect: float, seed: int, phi: float = 0.5
) -> list[dict]:
    """Recall and precision for level shifts and spread changes in 5 % of the products."""
    rows = []
    cases = [("level", 0.5), ("level", 1.0), ("level", 1.5), ("scale", 1.5), ("scale", 2.0)]
    for weekly in (False, True):
        for kind, size in cases:
            rng = np.random.default_rng([seed, 7, int(size * 10), int(weekly)])
            tp = {"new": 0, "old": 0}
            fp = {"new": 0, "old": 0}
            kind_right = n_true = 0
            for _ in range(windows):
                errors, sd = null_errors(rng, products, phi, weekly)
                drifted = rng.random(products) < 0.05
                win = errors[drifted, DAYS:]
                if kind == "level":
                    sign = rng.choice([-1.0, 1.0], int(drifted.sum()))
                    win += (sign * size * sd[drifted])[:, None]
                else:
                    centre = win.mean(axis=1, keepdims=True)
                    win[:] = centre + size * (win - centre)
                errors[drifted, DAYS:] = win
                new = new_pvalues(errors, min_effect)
                f_new = (stats.benjamini_hochberg(new["p"]) <= ALPHA) & new["effect_ok"]
                f_old = stats.benjamini_hochberg(old_pvalues(errors)) <= ALPHA
                for name, f in (("new", f_new), ("old", f_old)):
                    tp[name] += int((f & drifted).sum())
                    fp[name] += int((f & ~drifted).sum())
                want = 0 if kind == "level" else 1
                kind_right += int((f_new & drifted & (new["kind"] == want)).sum())
                n_true += int(drifted.sum())
            row = {"kind": kind, "size": size, "phi": phi, "weekly": weekly, "windows": windows}
            for name in ("new", "old"):
                row[f"recall_{name}"] = tp[name] / n_true
                found = tp[name] + fp[name]
                row[f"precision_{name}"] = tp[name] / found if found else float("nan")
            row["kind_right"] = kind_right / tp["new"] if tp["new"] else float("nan")
            rows.append(row)
            print(
                f"{kind} {size:g} weekly {weekly!s:5s}: new recall {row['recall_new']:.2f} "
                f"precision {row['precision_new']:.2f} kind right {row['kind_right']:.2f}; "
                f"old KS recall {row['recall_old']:.2f} precision {row['precision_old']:.2f}",
                flush=True,
            )
    return rows


def main() -> None:
    """Run the chosen parts and print (and optionally save) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--power-windows", type=int, default=40)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--part", default="null,power,pasta")
    parser.add_argument("--min-effect", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--old-windows", type=int, default=40)
    parser.add_argument("--weekly", choices=["both", "yes", "no"], default="both")
    args = parser.parse_args()
    parts = set(args.part.split(","))
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    if "null" in parts:
        weeklies = {"both": (False, True), "yes": (True,), "no": (False,)}[args.weekly]
        out["null"] = null_part(
            args.windows, args.products, args.min_effect, args.seed, args.old_windows, weeklies
        )
    if "power" in parts:
        out["power"] = power_part(args.power_windows, args.products, args.min_effect, args.seed)
    if "pasta" in parts:
        out["pasta"] = pasta_part(args.min_effect)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


def pasta_part(min_effect: float, path: Path | None = None) -> dict:
    """Weekly checks over 2015-2018 of a same-weekday-mean forecaster (8 weeks, refreshed
    every 28 days) on the pasta data: alarms of the old KS and the new test."""
    import pandas as pd

    from bench._pasta import pasta_path

    wide = pd.read_csv(path or pasta_path())
    dates = pd.to_datetime(wide["DATE"])
    days = pd.date_range(dates.min(), dates.max(), freq="D")
    pos = ((dates - days[0]).dt.days).to_numpy()
    qty_cols = [c for c in wide.columns if c.startswith("QTY_")]
    ids = [c[4:] for c in qty_cols]
    sales = np.full((len(ids), len(days)), np.nan)
    sales[:, pos] = wide[qty_cols].to_numpy(float).T
    promo = np.zeros_like(sales)
    promo[:, pos] = wide[[f"PROMO_{i}" for i in ids]].to_numpy(float).T
    weekday = days.day_of_week.to_numpy()
    forecast = np.full_like(sales, np.nan)
    for start in range(56, len(days), 28):
        past = sales[:, start - 56 : start]
        wd = weekday[start - 56 : start]
        for w in range(7):
            with np.errstate(invalid="ignore"):
                mean = np.nanmean(np.where(wd == w, past, np.nan), axis=1)
            cols = np.arange(start, min(start + 28, len(days)))
            cols = cols[weekday[cols] == w]
            forecast[:, cols] = mean[:, None]
    errors = sales - forecast
    closed = np.isnan(sales).all(axis=0)
    first = int(np.searchsorted(days, pd.Timestamp("2015-01-01"))) + 59
    checks = []
    for end in range(first, len(days), 7):
        ref, win = errors[:, end - 59 : end - 29], errors[:, end - 29 : end + 1]
        t = stats.drift_tests(
            ref, win, contiguous=np.ones(len(ids), bool), weekday=weekday[end - 59 : end + 1]
        )
        q = stats.benjamini_hochberg(t.pvalue)
        new = (q <= ALPHA) & effect_passes(t, min_effect)
        kinds = stats.drift_kind_index(t, stats.bh_cutoff(t.pvalue, ALPHA))
        ok_r, ok_w = ~np.isnan(ref), ~np.isnan(win)
        codes = np.arange(len(ids))
        sample = stats.two_sample(
            np.broadcast_to(codes[:, None], win.shape)[ok_w],
            win[ok_w],
            np.broadcast_to(codes[:, None], ref.shape)[ok_r],
            ref[ok_r],
            len(ids),
        )
        old = stats.benjamini_hochberg(stats.ks_pvalues(sample, 7)) <= ALPHA
        span = days[end - 59 : end + 1]
        christmas = bool(
            ((span.month == 12) & (span.day >= 20) | (span.month == 1) & (span.day <= 6)).any()
        )
        promo_change = (
            np.abs(promo[:, end - 29 : end + 1].mean(1) - promo[:, end - 59 : end - 29].mean(1))
            >= 0.2
        )
        checks.append(
            {
                "as_of": str(days[end].date()),
                "new": [ids[i] for i in np.flatnonzero(new)],
                "new_kinds": [stats.DRIFT_KINDS[kinds[i]] for i in np.flatnonzero(new)],
                "old": [ids[i] for i in np.flatnonzero(old)],
                "christmas": christmas,
                "closed_days": int(closed[end - 59 : end + 1].sum()),
                "new_with_promo_change": int((new & promo_change).sum()),
                "old_with_promo_change": int((old & promo_change).sum()),
            }
        )
    n = len(checks)
    new_weeks = [c for c in checks if c["new"]]
    old_weeks = [c for c in checks if c["old"]]
    from collections import Counter

    summary = {
        "checks": n,
        "weeks_alarm_new": len(new_weeks),
        "weeks_alarm_old": len(old_weeks),
        "flagged_new": sum(len(c["new"]) for c in checks),
        "flagged_old": sum(len(c["old"]) for c in checks),
        "new_kinds": dict(Counter(k for c in checks for k in c["new_kinds"])),
        "top_new": Counter(p for c in checks for p in c["new"]).most_common(8),
        "top_old": Counter(p for c in checks for p in c["old"]).most_common(8),
        "new_weeks_christmas": sum(c["christmas"] for c in new_weeks),
        "old_weeks_christmas": sum(c["christmas"] for c in old_weeks),
        "weeks_christmas": sum(c["christmas"] for c in checks),
        "new_weeks_closure": sum(c["closed_days"] > 0 for c in new_weeks),
        "old_weeks_closure": sum(c["closed_days"] > 0 for c in old_weeks),
        "weeks_closure": sum(c["closed_days"] > 0 for c in checks),
        "new_flags_promo_change": sum(c["new_with_promo_change"] for c in checks),
        "old_flags_promo_change": sum(c["old_with_promo_change"] for c in checks),
        "alarm_dates_new": [c["as_of"] for c in new_weeks],
    }
    print(json.dumps(summary, indent=1), flush=True)
    return {"summary": summary, "checks": checks}


if __name__ == "__main__":
    main()

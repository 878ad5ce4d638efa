"""Scoring: RMSE, MAE, RMSSE, MASE and bias per product, then aggregated per model.

Definitions (errors e = actual − forecast, on days with a record only):

- RMSE, MAE: in units. Bias: mean(forecast − actual) = −mean(e), the convention of the
  health check and the trainer, so a positive bias means forecasts are too high.
- RMSSE (the M5 competition's measure): RMSE divided by the in-sample RMSE of the
  one-step naive forecast, computed on the cutoff's own history from the product's
  first sale; the scaled errors of all cutoffs are pooled per product.
- MASE: MAE divided by the in-sample MAE of the seasonal (7-day) naive forecast.
- Aggregates are means over products (each product counts once, as in the fairness
  view), plus median, 90th percentile and worst decile of per-product RMSSE.
- Fairness disparity: p90 / median of per-product RMSSE (1.0 = every product served
  equally well; the trainer reports the same figure).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from forecastguard.scoring import disparity_ratio, naive_scale, worst_decile

SEASON = 7


def scales(history_units: np.ndarray, season: int = SEASON) -> tuple[np.ndarray, np.ndarray]:
    """Per-product (RMSSE scale, MASE scale) from a (T, N) history (NaN = no record).

    Each product's history starts at its first non-zero sale; days without a record
    inside it count as zero sales. The RMSSE scale is the project's one
    (`forecastguard.scoring.naive_scale`, lag 1). A product whose scale is 0 or
    undefined gets NaN (its scaled errors are left out).
    """
    units = np.asarray(history_units, dtype=float)
    t, n = units.shape
    filled = np.nan_to_num(units)
    sold = filled > 0
    first = np.where(sold.any(axis=0), sold.argmax(axis=0), t)
    # (N, T): zero-filled, NaN before the first sale (those pairs are skipped)
    rows = np.where(np.arange(t)[None, :] >= first[:, None], filled.T, np.nan)
    rmsse_scale = naive_scale(rows, lag=1)
    mase_scale = np.full(n, np.nan)
    if t > season:
        diff = np.abs(rows[:, season:] - rows[:, :-season])
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mase_scale = np.nanmean(diff, axis=1)
    rmsse_scale[~(rmsse_scale > 0)] = np.nan
    mase_scale[~(mase_scale > 0)] = np.nan
    return rmsse_scale, mase_scale


def per_product(forecasts: pd.DataFrame, scale_frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, product_id): n, rmse, mae, bias, rmsse, mase."""
    scored = forecasts[forecasts["actual"].notna()].merge(
        scale_frame, on=["cutoff", "product_id"], how="left", validate="many_to_one"
    )
    err = scored["actual"] - scored["forecast"]
    parts = pd.DataFrame(
        {
            "model": scored["model"],
            "product_id": scored["product_id"],
            "se": err**2,
            "ae": err.abs(),
            "e": err,
            "sse": (err / scored["rmsse_scale"]) ** 2,
            "sae": err.abs() / scored["mase_scale"],
        }
    )
    grouped = parts.groupby(["model", "product_id"], sort=False)
    out = grouped.agg(
        n=("e", "size"),
        mse=("se", "mean"),
        mae=("ae", "mean"),
        mean_error=("e", "mean"),
        msse=("sse", "mean"),
        mase=("sae", "mean"),
    ).reset_index()
    out["bias"] = -out.pop("mean_error")
    out["rmse"] = np.sqrt(out.pop("mse"))
    out["rmsse"] = np.sqrt(out.pop("msse"))
    return out[["model", "product_id", "n", "rmse", "mae", "rmsse", "mase", "bias"]]


def disparity(rmsse: np.ndarray) -> float:
    """p90 / median of per-product RMSSE (NaN when the median is 0 or nothing is finite)."""
    ratio = disparity_ratio(rmsse)
    return ratio if np.isfinite(ratio) else float("nan")


def paired_delta(
    model: pd.Series, baseline: pd.Series, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of (model − baseline) over paired items with a 95% BCa bootstrap interval.

    `scipy.stats.bootstrap` over the paired differences (items: products, or product ×
    cutoff cells); the interval is over those items, not over time.
    """
    diff = (model - baseline).dropna().to_numpy(dtype=float)
    if diff.size == 0:
        return (float("nan"),) * 3
    if diff.size < 3 or np.ptp(diff) == 0:
        m = float(diff.mean())
        return m, m, m
    res = bootstrap(
        (diff,),
        np.mean,
        n_resamples=n_boot,
        confidence_level=0.95,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return float(diff.mean()), float(ci.low), float(ci.high)


def aggregate(
    product_metrics: pd.DataFrame, timings: pd.DataFrame, *, baseline: str = "seasonal_naive"
) -> pd.DataFrame:
    """One row per model (in first-seen order): aggregated metrics, fairness and run time.

    When `baseline` is among the models, `d_rmsse` is each model's mean per-product
    RMSSE minus the baseline's, with a bootstrap 95% interval over products, and
    `beats_baseline` the share of products whose RMSSE is lower than the baseline's.
    """
    rows = []
    wide = product_metrics.pivot(index="product_id", columns="model", values="rmsse")
    for model, group in product_metrics.groupby("model", sort=False):
        rmsse = group["rmsse"].to_numpy(dtype=float)
        t = timings[timings["model"] == model]
        row = {
            "model": model,
            "products": int(group["product_id"].nunique()),
            "rmse": group["rmse"].mean(),
            "mae": group["mae"].mean(),
            "rmsse": np.nanmean(rmsse),
            "rmsse_median": np.nanmedian(rmsse),
            "rmsse_p90": np.nanpercentile(rmsse, 90),
            "mase": group["mase"].mean(),
            "bias": group["bias"].mean(),
            "disparity": disparity(rmsse),
            "worst_decile_rmsse": worst_decile(rmsse),
            "wall_s": float(t["wall_s"].sum()),
            "cpu_s": float(t["cpu_s"].sum()),
        }
        if baseline in wide.columns and model != baseline:
            common = wide[[model, baseline]].dropna()
            d, lo, hi = paired_delta(common[model], common[baseline])
            row.update(
                d_rmsse=d,
                d_rmsse_low=lo,
                d_rmsse_high=hi,
                beats_baseline=float((common[model] < common[baseline]).mean()),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def family(model: str) -> str:
    """The model family of a seed variant (`lstm#s42` -> `lstm`)."""
    return model.split("#", 1)[0]


def by_family(product_metrics: pd.DataFrame) -> pd.DataFrame:
    """Per-product metrics averaged over each family's seeds (one row per family, product).

    The mean of the seeds' metrics, not the metrics of the seeds' mean forecast.
    """
    frame = product_metrics.assign(model=product_metrics["model"].map(family))
    cols = ["n", "rmse", "mae", "rmsse", "mase", "bias"]
    return frame.groupby(["model", "product_id"], sort=False)[cols].mean().reset_index()


def family_timings(timings: pd.DataFrame) -> pd.DataFrame:
    """Run times summed over each family's seeds."""
    if timings.empty:
        return timings
    return timings.assign(model=timings["model"].map(family))


def per_cutoff(forecasts: pd.DataFrame, scale_frame: pd.DataFrame) -> pd.DataFrame:
    """Rows {model, cutoff, rmsse, worst_decile_rmsse, bias, seeds} and, for models with
    quantiles, {coverage_80, coverage_80_p10, wspl} (`interval_scores`), families
    seed-averaged.

    `rmsse` is the mean per-product RMSSE of that cutoff's window, `bias` the mean
    per-product bias; a family's row is the mean of its seeds' rows (`seeds` of them).
    """
    rows = []
    for cutoff, part in forecasts.groupby("cutoff", sort=True):
        per = by_family(per_product(part, scale_frame))
        counts = part.groupby(part["model"].map(family))["model"].nunique()
        for model, group in per.groupby("model", sort=False):
            rmsse = group["rmsse"].to_numpy(dtype=float)
            rows.append(
                {
                    "model": model,
                    "cutoff": str(pd.Timestamp(cutoff).date()),
                    "rmsse": float(np.nanmean(rmsse)),
                    "worst_decile_rmsse": worst_decile(rmsse),
                    "bias": float(group["bias"].mean()),
                    "seeds": int(counts.get(model, 1)),
                }
            )
    out = pd.DataFrame(rows)
    intervals = interval_scores(forecasts, scale_frame)
    if out.empty or intervals.empty:
        return out
    return out.merge(intervals, on=["model", "cutoff"], how="left")


INTERVAL_LEVELS = {"q10": 0.1, "q50": 0.5, "q90": 0.9}


def pinball(actual: np.ndarray, quantile: np.ndarray, level: float) -> np.ndarray:
    """The pinball (quantile) loss of `quantile` at `level` for `actual`."""
    diff = actual - quantile
    return np.where(diff >= 0, level * diff, (level - 1.0) * diff)


def interval_scores(forecasts: pd.DataFrame, scale_frame: pd.DataFrame) -> pd.DataFrame:
    """Per (model, cutoff): `coverage_80` (share of scored days inside [q10, q90]),
    `coverage_80_p10` (the 10th percentile of the products' coverage) and `wspl`.

    WSPL is M5's Uncertainty metric at the stored levels: per product, the pinball loss
    averaged over days and levels and divided by its in-sample seasonal-naive absolute
    error (the MASE scale), then weighted by the product's units sold in the history's
    last 28 days (equal weights when those are unknown). Models without quantiles get
    no row; seeds are averaged per family as in `per_cutoff`.
    """
    have = [c for c in INTERVAL_LEVELS if c in forecasts.columns]
    if len(have) < len(INTERVAL_LEVELS):
        return pd.DataFrame(columns=["model", "cutoff", "coverage_80", "coverage_80_p10", "wspl"])
    f = forecasts[forecasts["actual"].notna() & forecasts[have].notna().all(axis=1)]
    f = f.merge(scale_frame, on=["cutoff", "product_id"], how="left", validate="many_to_one")
    y = f["actual"].to_numpy(dtype=float)
    hit = (y >= f["q10"].to_numpy()) & (y <= f["q90"].to_numpy())
    loss = np.mean(
        [pinball(y, f[c].to_numpy(dtype=float), a) for c, a in INTERVAL_LEVELS.items()], axis=0
    )
    weight = f["sales_28"] if "sales_28" in f.columns else pd.Series(1.0, index=f.index)
    parts = pd.DataFrame(
        {
            "model": f["model"].to_numpy(),
            "cutoff": f["cutoff"].to_numpy(),
            "product_id": f["product_id"].to_numpy(),
            "hit": hit,
            "spl": loss / f["mase_scale"].to_numpy(dtype=float),
            "w": weight.fillna(0.0).to_numpy(dtype=float),
        }
    )
    per = parts.groupby(["model", "cutoff", "product_id"], sort=False).agg(
        hit=("hit", "mean"), spl=("spl", "mean"), w=("w", "first")
    )
    rows = []
    for (model, cutoff), g in per.groupby(level=["model", "cutoff"], sort=False):
        ok = np.isfinite(g["spl"].to_numpy())
        w = g["w"].to_numpy()[ok]
        w = w / w.sum() if w.sum() > 0 else np.full(ok.sum(), 1.0 / max(ok.sum(), 1))
        rows.append(
            {
                "model": family(model),
                "cutoff": str(pd.Timestamp(cutoff).date()),
                "coverage_80": float(g["hit"].mean()),
                "coverage_80_p10": float(np.percentile(g["hit"].to_numpy(), 10)),
                "wspl": float(np.sum(w * g["spl"].to_numpy()[ok])),
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.groupby(["model", "cutoff"], sort=False).mean().reset_index()


def cell_rmsse(forecasts: pd.DataFrame, scale_frame: pd.DataFrame) -> pd.DataFrame:
    """Per (family, cutoff, product) RMSSE, seeds averaged: the cells paired comparisons use."""
    parts = []
    for cutoff, part in forecasts.groupby("cutoff", sort=True):
        per = by_family(per_product(part, scale_frame))
        parts.append(per[["model", "product_id", "rmsse"]].assign(cutoff=cutoff))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def paired_comparison(
    cells: pd.DataFrame, model: str, reference: str, *, n_boot: int = 2000, seed: int = 0
) -> dict[str, float] | None:
    """`model` against `reference` on the same (cutoff, product) cells.

    Mean RMSSE difference with a BCa bootstrap interval over the cells, and the relative
    change of the worst-decile RMSSE (per product, cutoffs pooled) with a bootstrap
    interval over products (paired resampling). None if either model is missing.
    """
    wide = cells.pivot_table(index=["cutoff", "product_id"], columns="model", values="rmsse")
    if model not in wide or reference not in wide:
        return None
    both = wide[[model, reference]].dropna()
    d, lo, hi = paired_delta(both[model], both[reference], n_boot=n_boot, seed=seed)
    per_product_rmsse = both.groupby(level="product_id").mean()
    a = per_product_rmsse[model].to_numpy()
    b = per_product_rmsse[reference].to_numpy()

    def ratio(x: np.ndarray, y: np.ndarray) -> float:
        return worst_decile(x) / worst_decile(y) - 1.0

    rel = ratio(a, b)
    wd_lo = wd_hi = rel
    if a.size >= 3:
        res = bootstrap(
            (a, b),
            ratio,
            paired=True,
            vectorized=False,
            n_resamples=n_boot,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        wd_lo, wd_hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {
        "model": model,
        "reference": reference,
        "cells": len(both),
        "d_rmsse": d,
        "d_rmsse_low": lo,
        "d_rmsse_high": hi,
        "rmsse_change": float(both[model].mean() / both[reference].mean() - 1.0),
        "worst_decile_change": rel,
        "worst_decile_change_low": wd_lo,
        "worst_decile_change_high": wd_hi,
    }


COMPARISONS: tuple[tuple[str, str], ...] = (
    ("dro_lstm", "lstm"),  # group DRO alone
    ("debiased_lstm", "lstm"),  # DRO + bias offsets
    ("trainer", "lightgbm"),  # served forecaster vs LightGBM alone
    ("trainer", "lstm"),
    ("blend", "lightgbm"),
    ("trainer_lightgbm", "lightgbm"),
    ("trainer_lightgbm", "trainer_lightgbm_heldout"),  # the refit on every day alone
)

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

import numpy as np
import pandas as pd

SEASON = 7


def scales(history_units: np.ndarray, season: int = SEASON) -> tuple[np.ndarray, np.ndarray]:
    """Per-product (RMSSE scale, MASE scale) from a (T, N) history (NaN = no record).

    Each product's history starts at its first non-zero sale; days without a record
    inside it count as zero sales. A product whose scale is 0 or undefined gets NaN
    (its scaled errors are left out).
    """
    units = np.asarray(history_units, dtype=float)
    n = units.shape[1]
    rmsse_scale = np.full(n, np.nan)
    mase_scale = np.full(n, np.nan)
    for j in range(n):
        col = units[:, j]
        sold = np.flatnonzero(np.nan_to_num(col) > 0)
        if sold.size == 0:
            continue
        y = np.nan_to_num(col[sold[0] :])
        if y.size > 1:
            rmsse_scale[j] = np.sqrt(np.mean(np.diff(y) ** 2))
        if y.size > season:
            mase_scale[j] = np.mean(np.abs(y[season:] - y[:-season]))
    rmsse_scale[rmsse_scale <= 0] = np.nan
    mase_scale[mase_scale <= 0] = np.nan
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
    values = np.asarray(rmsse, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    median = float(np.median(values))
    return float(np.percentile(values, 90) / median) if median > 0 else float("nan")


def worst_decile(rmsse: np.ndarray) -> float:
    """Mean per-product RMSSE over the worst 10% of products (at least one)."""
    values = np.sort(np.asarray(rmsse, dtype=float)[np.isfinite(rmsse)])
    if values.size == 0:
        return float("nan")
    k = max(1, int(np.ceil(0.1 * values.size)))
    return float(values[-k:].mean())


def paired_delta(
    model: pd.Series, baseline: pd.Series, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of (model − baseline) over products with a 95% bootstrap interval over products."""
    diff = (model - baseline).dropna().to_numpy(dtype=float)
    if diff.size == 0:
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    boots = rng.choice(diff, size=(n_boot, diff.size), replace=True).mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


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

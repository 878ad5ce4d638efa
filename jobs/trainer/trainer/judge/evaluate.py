"""Evaluation: RMSE, MAE, RMSSE and bias, overall and per product, for the model and baselines.

Conventions: the error is `actual - predicted` (as the health check's residuals);
`bias` is the mean of `predicted - actual`, as in the health check's per-product
figures, so a positive bias means the forecasts are too high. RMSSE of a product is
`sqrt(mean((actual - predicted)^2) / scale)` where `scale` is the mean squared one-day
change of that product's training series (M5's denominator); the overall RMSSE is the
unweighted mean over products. Baselines forecast the same (product, origin) pairs:
seasonal naive (the last 7 days repeated) and the moving average of the last
`moving_average_days` days.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger
from forecastguard.scoring import (
    disparity_ratio,
    naive_scale,
    per_group_rmsse,
    rmsse,
    worst_decile,
)

if TYPE_CHECKING:
    from trainer.types import Prepared


log = get_logger(__name__)


def rmsse_scale(units: np.ndarray) -> np.ndarray:
    """Per row of `units` (series × days, NaN = not listed): mean squared one-day change.

    The square of `forecastguard.scoring.naive_scale(units, lag=1)` (the project's one
    RMSSE scale); 1.0 where it is 0 or undefined, so such a product scores its plain RMSE.
    """
    scale = naive_scale(units, lag=1) ** 2
    return np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)


def per_product_rmsse(
    actual: np.ndarray,
    predicted: np.ndarray,
    product: np.ndarray,
    scale: np.ndarray,
    *,
    n_products: int,
) -> np.ndarray:
    """RMSSE per product (NaN for products with no point); `product` is 0-based per row.

    `scale` is `rmsse_scale`'s squared scale; the computation is `scoring.per_group_rmsse`.
    """
    err = (np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)).reshape(
        len(product), -1
    )
    groups = np.repeat(np.asarray(product), err.shape[1])
    return per_group_rmsse(err.reshape(-1), groups, np.sqrt(scale), n_products)


def worst_decile_mean(values: np.ndarray) -> float:
    """Mean of the worst (largest) 10% of finite values (at least one)."""
    return worst_decile(values)


def disparity(rmsse: np.ndarray, products: list[str]) -> dict[str, Any]:
    """Disparity of per-product RMSSE: p90 / median, the worst product, worst-decile mean."""
    r = np.asarray(rmsse, dtype=float)
    ok = np.isfinite(r)
    if not ok.any():
        nan = float("nan")
        return {
            "mean_rmsse": nan,
            "median_rmsse": nan,
            "p90_over_median": nan,
            "worst_decile_rmsse": nan,
            "worst_product": None,
            "worst_rmsse": nan,
        }
    worst = int(np.nanargmax(np.where(ok, r, -np.inf)))
    return {
        "mean_rmsse": float(r[ok].mean()),
        "median_rmsse": float(np.median(r[ok])),
        "p90_over_median": disparity_ratio(r),
        "worst_decile_rmsse": worst_decile_mean(r),
        "worst_product": products[worst],
        "worst_rmsse": float(r[worst]),
    }


def point_metrics(
    frame: pd.DataFrame, predicted: str, scale: pd.Series
) -> tuple[dict, pd.DataFrame]:
    """Overall and per-product RMSE, MAE, RMSSE and bias of column `predicted` vs `actual`."""
    err = frame["actual"] - frame[predicted]
    g = pd.DataFrame({"product_id": frame["product_id"], "e": err, "e2": err**2, "ae": err.abs()})
    per = g.groupby("product_id").agg(
        n=("e", "size"), mse=("e2", "mean"), mae=("ae", "mean"), mean_error=("e", "mean")
    )
    per["rmse"] = np.sqrt(per["mse"])
    per["rmsse"] = rmsse(np.sqrt(per["mse"]), np.sqrt(scale.reindex(per.index).fillna(1.0)))
    per["bias"] = -per["mean_error"]
    per = per.drop(columns=["mse", "mean_error"])[["n", "rmse", "mae", "rmsse", "bias"]]
    overall = {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "rmsse": float(per["rmsse"].mean()),
        "bias": float(-np.mean(err)),
    }
    return overall, per


def baseline_forecasts(
    units: np.ndarray, series: np.ndarray, origin: np.ndarray, horizon: int, ma_days: int
) -> dict[str, np.ndarray]:
    """(N, H) forecasts of the baselines for windows (series row, origin index) of `units`."""
    steps7 = origin[:, None] + np.arange(-7, 0)[None, :]
    week = units[series[:, None], np.clip(steps7, 0, None)]
    week = np.nan_to_num(np.where(steps7 >= 0, week, np.nan), nan=0.0)
    seasonal = np.tile(week, (1, int(np.ceil(horizon / 7))))[:, :horizon]
    steps = origin[:, None] + np.arange(-ma_days, 0)[None, :]
    hist = np.where(steps >= 0, units[series[:, None], np.clip(steps, 0, None)], np.nan)
    counts = np.isfinite(hist).sum(axis=1)
    ma = np.where(counts > 0, np.nansum(hist, axis=1) / np.maximum(counts, 1), 0.0)
    return {
        "seasonal_naive": seasonal,
        "moving_average": np.repeat(ma[:, None], horizon, axis=1),
    }


ETS_CANDIDATES: tuple[tuple[str | None, bool, str | None], ...] = (
    (None, False, None),
    (None, False, "add"),
    ("add", True, None),
    ("add", True, "add"),
)


def auto_ets_forecast(history: np.ndarray, horizon: int) -> np.ndarray:
    """ETS with additive errors, the best of (trend: none/damped) × (weekly season: none/additive) by AICc.

    A statsmodels stand-in for statsforecast's AutoETS (which needs pandas < 3 and so
    does not install here). Falls back to the history's mean when no candidate fits.
    """
    import warnings

    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = np.asarray(history, dtype=float)
    y = y[np.isfinite(y)]
    if y.size < 21:
        return np.full(horizon, float(y.mean()) if y.size else 0.0)
    best, best_aicc = None, np.inf
    for trend, damped, seasonal in ETS_CANDIDATES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fit = ETSModel(
                    y,
                    error="add",
                    trend=trend,
                    damped_trend=damped,
                    seasonal=seasonal,
                    seasonal_periods=7 if seasonal else None,
                ).fit(disp=False)
            except (ValueError, np.linalg.LinAlgError):
                continue
        if np.isfinite(fit.aicc) and fit.aicc < best_aicc:
            best, best_aicc = fit, fit.aicc
    if best is None:
        return np.full(horizon, float(y.mean()))
    return np.clip(np.asarray(best.forecast(horizon), dtype=float), 0.0, None)


def auto_ets_forecasts(
    units: np.ndarray, series: np.ndarray, origin: np.ndarray, horizon: int, history_days: int = 364
) -> np.ndarray:
    """(N, H) `auto_ets_forecast` for each (series row, origin), from the last `history_days`."""
    return np.stack(
        [
            auto_ets_forecast(units[s, max(0, o - history_days) : o], horizon)
            for s, o in zip(series, origin, strict=True)
        ]
    )


SERVABLE_BASELINES = ("seasonal_naive", "moving_average")  # can serve as the fallback champion


@dataclass(frozen=True)
class Evaluation:
    """`metrics` in the metrics.json shape (DESIGN.md) and the per-product table for the CSV.

    `baseline_predictions` holds the test points (product_id, origin_date, target_date,
    actual) with one column of forecasts per baseline, for the fallback champion's
    residuals.
    """

    metrics: dict[str, Any]
    per_product: pd.DataFrame
    baseline_predictions: pd.DataFrame | None = None


def best_baseline(evaluation: Evaluation) -> str:
    """The servable baseline with the lowest mean RMSSE (seasonal naive on a tie)."""
    base = evaluation.metrics["baselines"]
    scored = [(base[n]["rmsse"], i, n) for i, n in enumerate(SERVABLE_BASELINES) if n in base]
    finite = [t for t in scored if np.isfinite(t[0])]
    if not finite:
        raise ValueError("no baseline has a finite RMSSE on the test window")
    return min(finite)[2]


def baseline_evaluation(evaluation: Evaluation, name: str) -> Evaluation:
    """One baseline's scores as an `Evaluation` of its own (as a model's would read).

    Used when a baseline is (or becomes) the champion: `metrics["model"]` is the
    baseline's overall scores, `fairness` its per-product RMSSE disparity, `per_product`
    its product_id/rmsse table and `baseline_predictions` its holdout frame with the
    forecasts in `predicted`.
    """
    if name not in evaluation.metrics["baselines"]:
        raise ValueError(f"the evaluation has no baseline {name!r}")
    per = evaluation.per_product[["product_id", "n", f"{name}_rmsse"]].rename(
        columns={f"{name}_rmsse": "rmsse"}
    )
    disp = disparity(per["rmsse"].to_numpy(), list(per["product_id"]))
    metrics = {
        "model": dict(evaluation.metrics["baselines"][name]),
        "baselines": evaluation.metrics["baselines"],
        "fairness": {
            "disparity_p90_over_median": disp["p90_over_median"],
            "worst_decile_rmsse": disp["worst_decile_rmsse"],
            "worst_product": disp["worst_product"],
            "worst_rmsse": disp["worst_rmsse"],
        },
        "n_products": evaluation.metrics["n_products"],
        "n_points": evaluation.metrics["n_points"],
        "horizon": evaluation.metrics["horizon"],
    }
    holdout = None
    if evaluation.baseline_predictions is not None:
        frame = evaluation.baseline_predictions
        holdout = frame[["product_id", "origin_date", "target_date", "actual", name]].rename(
            columns={name: "predicted"}
        )
    return Evaluation(metrics=metrics, per_product=per, baseline_predictions=holdout)


def evaluate(pred: pd.DataFrame, prepared: Prepared, *, auto_ets: bool = False) -> Evaluation:
    """Score forecasts (from `predict_split`) and the baselines on the same points.

    `pred` needs product_id, origin_date, target_date, actual, predicted. `auto_ets`
    adds the (slower: four model fits a product and origin) `auto_ets` baseline.
    """
    missing = {"product_id", "origin_date", "target_date", "actual", "predicted"} - set(
        pred.columns
    )
    if missing:
        raise ValueError(f"prediction frame lacks column(s) {sorted(missing)}")
    if pred.empty:
        raise ValueError("prediction frame is empty: nothing to evaluate")
    cfg = prepared.cfg
    frame = pred.sort_values(["product_id", "origin_date", "target_date"]).reset_index(drop=True)
    scale = pd.Series(prepared.scale, index=list(prepared.products))
    model, per = point_metrics(frame, "predicted", scale)

    # Baselines for the same (product, origin) windows.
    windows = frame.drop_duplicates(["product_id", "origin_date"])[["product_id", "origin_date"]]
    row = {p: i for i, p in enumerate(prepared.panel.series_ids)}
    series = windows["product_id"].map(row).to_numpy(dtype=np.int64)
    origin = prepared.panel.calendar.get_indexer(pd.to_datetime(windows["origin_date"]))
    base = baseline_forecasts(
        prepared.panel.units, series, origin, cfg.horizon, cfg.moving_average_days
    )
    if auto_ets:
        base["auto_ets"] = auto_ets_forecasts(prepared.panel.units, series, origin, cfg.horizon)
    keys = pd.DataFrame(
        {
            "product_id": np.repeat(windows["product_id"].to_numpy(), cfg.horizon),
            "target_date": (
                np.repeat(pd.to_datetime(windows["origin_date"]).to_numpy(), cfg.horizon)
                + np.tile(np.arange(cfg.horizon), len(windows)).astype("timedelta64[D]")
            ),
        }
    )
    baselines: dict[str, Any] = {}
    points = frame[["product_id", "origin_date", "target_date", "actual"]].copy()
    for name, values in base.items():
        keyed = keys.assign(**{name: values.reshape(-1)})
        joined = frame.merge(keyed, on=["product_id", "target_date"], how="left")
        overall, per_b = point_metrics(joined, name, scale)
        ratio = disparity_ratio(per_b["rmsse"].to_numpy())
        overall["disparity_p90_over_median"] = ratio if np.isfinite(ratio) else None
        baselines[name] = overall
        per[f"{name}_rmsse"] = per_b["rmsse"]
        points[name] = joined[name].to_numpy()
    disp = disparity(per["rmsse"].to_numpy(), list(per.index))
    metrics = {
        "model": model,
        "baselines": baselines,
        "fairness": {
            "disparity_p90_over_median": disp["p90_over_median"],
            "worst_decile_rmsse": disp["worst_decile_rmsse"],
            "worst_product": disp["worst_product"],
            "worst_rmsse": disp["worst_rmsse"],
        },
        "improvement_vs_seasonal_naive": 1.0
        - model["rmsse"] / baselines["seasonal_naive"]["rmsse"],
        "n_products": int(per.shape[0]),
        "n_points": int(frame.shape[0]),
        "horizon": cfg.horizon,
    }
    log.info(
        "stage evaluate",
        extra={
            "stage": "evaluate",
            "rmsse": round(model["rmsse"], 4),
            **{f"{k}_rmsse": round(v["rmsse"], 4) for k, v in baselines.items()},
            "products": metrics["n_products"],
        },
    )
    return Evaluation(metrics=metrics, per_product=per.reset_index(), baseline_predictions=points)

"""Bias detection and correction on forecast residuals (error = actual - predicted).

Detection: mean and median error overall and per product, and a Breusch–Pagan test
(statsmodels) of whether the residuals' variance grows with the forecast level.
Correction: per product, the median validation residual shrunk toward zero for products
with few points, `offset = median * n / (n + k)` (`k` = `shrinkage`), added to that
product's forecasts (clipped at 0); unknown products get no correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
from statsmodels.stats.diagnostic import het_breuschpagan

from forecastguard.logs import get_logger

log = get_logger(__name__)


def _check(frame: pd.DataFrame, predicted: str) -> None:
    missing = {"product_id", "actual", predicted} - set(frame.columns)
    if missing:
        raise ValueError(f"residual frame lacks column(s) {sorted(missing)}")
    if frame.empty:
        raise ValueError("residual frame is empty")


def bias_report(frame: pd.DataFrame, predicted: str = "predicted") -> dict[str, Any]:
    """Mean/median error overall and per product, and the Breusch–Pagan test."""
    _check(frame, predicted)
    err = frame["actual"].to_numpy(float) - frame[predicted].to_numpy(float)
    per = (
        pd.DataFrame({"product_id": frame["product_id"], "e": err})
        .groupby("product_id")["e"]
        .agg(["size", "mean", "median"])
    )
    level = frame[predicted].to_numpy(float)
    bp: dict[str, Any] = {"lm": None, "p_value": None, "heteroscedastic": None}
    if err.size > 3 and np.ptp(level) > 0 and np.any(err != err[0]):
        lm, p, _, _ = het_breuschpagan(err, np.column_stack([np.ones_like(level), level]))
        bp = {"lm": float(lm), "p_value": float(p), "heteroscedastic": bool(p < 0.05)}
    return {
        "n": int(err.size),
        "mean_error": float(err.mean()),
        "median_error": float(np.median(err)),
        "mean_abs_product_bias": float(per["mean"].abs().mean()),
        "breusch_pagan": bp,
        "per_product": {
            str(p): {"n": int(r["size"]), "mean": float(r["mean"]), "median": float(r["median"])}
            for p, r in per.iterrows()
        },
    }


@dataclass(frozen=True)
class BiasCorrection:
    """Additive per-product offsets (units) to add to forecasts."""

    offsets: dict[str, float]
    shrinkage: float

    def apply(self, frame: pd.DataFrame, column: str = "predicted") -> pd.DataFrame:
        """A copy of `frame` with `column` corrected (works on `predicted_units` too)."""
        if column not in frame.columns or "product_id" not in frame.columns:
            raise ValueError(f"cannot correct: frame lacks product_id or {column!r}")
        out = frame.copy()
        offset = out["product_id"].astype(str).map(self.offsets).fillna(0.0).to_numpy(float)
        out[column] = np.clip(out[column].to_numpy(float) + offset, 0.0, None)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable."""
        return {"shrinkage": self.shrinkage, "offsets": self.offsets}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of `to_dict`."""
        return cls(
            offsets={str(k): float(v) for k, v in data["offsets"].items()},
            shrinkage=float(data["shrinkage"]),
        )


def fit_bias_correction(
    val_pred: pd.DataFrame, shrinkage: float = 28.0, predicted: str = "predicted"
) -> BiasCorrection:
    """Fit the per-product offsets on validation residuals."""
    _check(val_pred, predicted)
    err = val_pred["actual"].to_numpy(float) - val_pred[predicted].to_numpy(float)
    per = (
        pd.DataFrame({"product_id": val_pred["product_id"].astype(str), "e": err})
        .groupby("product_id")["e"]
        .agg(["size", "median"])
    )
    offsets = per["median"] * per["size"] / (per["size"] + shrinkage)
    log.info(
        "stage bias correction fitted",
        extra={
            "stage": "bias",
            "products": len(offsets),
            "mean_abs_offset": round(float(offsets.abs().mean()), 4),
            "median_error": round(float(np.median(err)), 4),
        },
    )
    return BiasCorrection(
        offsets={str(k): float(v) for k, v in offsets.items()}, shrinkage=shrinkage
    )


def correction_effect(test_pred: pd.DataFrame, correction: BiasCorrection) -> dict[str, Any]:
    """Bias and error on the test set before and after applying `correction`."""
    after = correction.apply(test_pred)

    def summary(frame: pd.DataFrame) -> dict[str, Any]:
        rep = bias_report(frame)
        err = frame["actual"] - frame["predicted"]
        return {
            "mean_error": rep["mean_error"],
            "median_error": rep["median_error"],
            "mean_abs_product_bias": rep["mean_abs_product_bias"],
            "rmse": float(np.sqrt(np.mean(err**2))),
            "mae": float(np.mean(np.abs(err))),
            "breusch_pagan_p": rep["breusch_pagan"]["p_value"],
        }

    return {"before": summary(test_pred), "after": summary(after)}

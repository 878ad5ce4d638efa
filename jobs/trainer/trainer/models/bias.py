"""Bias detection and correction on forecast residuals (error = actual - predicted).

Detection: mean and median error overall and per product.

Correction (empirical Bayes, mean-based): fitted on the out-of-sample residuals of the
model it corrects, from several forecast origins (e.g. validation forecasts every 7
days). For product p, `m_p` is its mean residual and `v_p` the sampling variance of that
mean: the residuals' variance over an effective sample size that counts each target day
once and discounts serial correlation (AR(1): `n_eff = n_days (1 - rho) / (1 + rho)`).
The spread of the true offsets, `tau^2 = max(0, var(m) - mean(v))` (method of moments),
sets how much to trust each product's mean: `offset_p = m_p tau^2 / (tau^2 + k v_p)`,
so a noisy product (large `v_p`) is shrunk toward 0 and, when the per-product means
differ no more than their noise explains, every offset is 0. `k` is
`TrainConfig.bias_shrinkage` (1 = the posterior mean; 0 = the raw means). The mean, not
the median: the loss is squared error, and the median mostly shifts skew (on the pasta
validation residuals the median error was -0.50 units against a mean of -0.10).
The offset is added to that product's forecasts (clipped at 0); unknown products get none.

Heteroscedasticity (errors grow with the level) is handled where it matters: every
product's noise `v_p` sets its own shrinkage. No pooled test result is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger

log = get_logger(__name__)


def _check(frame: pd.DataFrame, predicted: str) -> None:
    missing = {"product_id", "actual", predicted} - set(frame.columns)
    if missing:
        raise ValueError(f"residual frame lacks column(s) {sorted(missing)}")
    if frame.empty:
        raise ValueError("residual frame is empty")


def bias_report(frame: pd.DataFrame, predicted: str = "predicted") -> dict[str, Any]:
    """Mean/median error overall and per product."""
    _check(frame, predicted)
    err = frame["actual"].to_numpy(float) - frame[predicted].to_numpy(float)
    per = (
        pd.DataFrame({"product_id": frame["product_id"], "e": err})
        .groupby("product_id")["e"]
        .agg(["size", "mean", "median"])
    )
    return {
        "n": int(err.size),
        "mean_error": float(err.mean()),
        "median_error": float(np.median(err)),
        "mean_abs_product_bias": float(per["mean"].abs().mean()),
        "per_product": {
            str(p): {"n": int(r["size"]), "mean": float(r["mean"]), "median": float(r["median"])}
            for p, r in per.iterrows()
        },
    }


@dataclass(frozen=True)
class BiasCorrection:
    """Additive per-product offsets (units) to add to forecasts."""

    offsets: dict[str, float]
    shrinkage: float  # k: the multiplier of each product's noise (1 = posterior mean)
    prior_var: float | None = None  # tau^2, the estimated spread of the true offsets

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
        return {"shrinkage": self.shrinkage, "prior_var": self.prior_var, "offsets": self.offsets}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of `to_dict`."""
        return cls(
            offsets={str(k): float(v) for k, v in data["offsets"].items()},
            shrinkage=float(data["shrinkage"]),
            prior_var=None if data.get("prior_var") is None else float(data["prior_var"]),
        )


MAX_RHO = 0.95  # the residuals' lag-1 autocorrelation is clipped to [0, MAX_RHO]


def _noise(frame: pd.DataFrame, err: np.ndarray) -> pd.DataFrame:
    """Per product: mean residual `m`, its sampling variance `v` and the effective n."""
    parts = pd.DataFrame({"product_id": frame["product_id"].astype(str).to_numpy(), "e": err})
    path = ["product_id"]
    if "origin_date" in frame.columns:
        parts["origin"] = frame["origin_date"].to_numpy()
        path.append("origin")
    # lag-1 autocorrelation within each forecast path (consecutive target days)
    parts["prev"] = parts.groupby(path, sort=False)["e"].shift(1)
    g = parts.groupby("product_id", sort=True)
    per = g["e"].agg(n="size", m="mean", var="var")
    centred = parts["e"] - parts["product_id"].map(per["m"])
    prev_c = parts["prev"] - parts["product_id"].map(per["m"])
    num = (centred * prev_c).groupby(parts["product_id"]).sum(min_count=1)
    den = (centred**2).groupby(parts["product_id"]).sum()
    rho = (num / den.where(den > 0)).fillna(0.0).clip(0.0, MAX_RHO)
    if "target_date" in frame.columns:
        days = (
            pd.Series(frame["target_date"].to_numpy())
            .groupby(parts["product_id"].to_numpy())
            .nunique()
        )
    else:
        days = per["n"]
    n_eff = (days.reindex(per.index) * (1 - rho) / (1 + rho)).clip(lower=1.0)
    per["rho"] = rho.reindex(per.index)
    per["n_eff"] = n_eff
    per["v"] = per["var"].fillna(0.0) / n_eff
    return per


def fit_bias_correction(
    residuals: pd.DataFrame, shrinkage: float = 1.0, predicted: str = "predicted"
) -> BiasCorrection:
    """Per-product offsets from out-of-sample residuals of the model they will correct.

    `residuals` has product_id, actual, `predicted` and, when forecasts come from several
    origins, origin_date and target_date (each target day is counted once in the
    effective sample size; serial correlation within a forecast path is discounted).
    """
    _check(residuals, predicted)
    if shrinkage < 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
    err = residuals["actual"].to_numpy(float) - residuals[predicted].to_numpy(float)
    per = _noise(residuals, err)
    m, v = per["m"].to_numpy(), per["v"].to_numpy()
    tau2 = float(max(0.0, np.var(m, ddof=1) - v.mean())) if m.size > 1 else 0.0
    if shrinkage == 0:
        factor = np.ones_like(m)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(tau2 > 0, tau2 / (tau2 + shrinkage * v), 0.0)
    offsets = pd.Series(m * factor, index=per.index)
    log.info(
        "stage bias correction fitted",
        extra={
            "stage": "bias",
            "products": len(offsets),
            "prior_var": round(tau2, 6),
            "mean_abs_offset": round(float(offsets.abs().mean()), 4),
            "mean_abs_raw_mean": round(float(np.abs(m).mean()), 4),
            "mean_factor": round(float(factor.mean()), 4),
        },
    )
    return BiasCorrection(
        offsets={str(k): float(val) for k, val in offsets.items()},
        shrinkage=float(shrinkage),
        prior_var=tau2,
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
        }

    return {"before": summary(test_pred), "after": summary(after)}

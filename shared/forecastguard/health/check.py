"""The model health check: from a window's data to a typed result (pure; no I/O here).

Drift is judged on forecast errors (actual - predicted), per product, against a reference:
the same product's errors in the `window_days` days before the window when it has at
least `min_samples` there, all from the model that forecast the window, otherwise the
champion's holdout errors (`model_residuals`). (After a retrain the previous window's
errors are another model's: a better model would look like drift and ask for another
retrain.)
A point forecast is less dispersed than the sales it predicts, so comparing predicted
with actual values would call every intermittent product "drifted"; the errors of a
healthy model keep their distribution, and a bias or a widening of them moves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from forecastguard.config import Settings
from forecastguard.frequency import detect_frequency
from forecastguard.health import stats
from forecastguard.health.window import WindowData

REFERENCES = ("previous_window", "holdout", "none")
MAX_LISTED_DRIFTED = 100  # in the summary; every product is in health_check_products


@dataclass(frozen=True)
class HealthParams:
    """The thresholds of the check (from `Settings`)."""

    rmse_threshold: float = 18.0
    fdr_alpha: float = 0.05
    min_samples: int = 7
    stale_days: int = 3
    data_drift_unhealthy: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthParams:
        """The health-check thresholds of these settings."""
        return cls(
            rmse_threshold=settings.rmse_threshold,
            fdr_alpha=settings.fdr_alpha,
            min_samples=settings.min_samples,
            stale_days=settings.stale_days,
            data_drift_unhealthy=settings.data_drift_unhealthy,
        )


@dataclass
class HealthResult:
    """The outcome of one check; `to_dict()` is the JSON the CLI and the endpoint return."""

    as_of: date
    window_start: date
    window_end: date
    healthy: bool
    avg_rmse: float | None
    p_value: float | None  # Simes' global p-value of the error KS tests
    drift_detected: bool
    drifted_share: float | None  # drifted / tested products
    reasons: list[str]
    reason_kinds: list[str]  # stable codes of the reasons: empty, rmse, drift, stale, data_drift
    model_versions: list[str]
    model_version: str | None
    n_products: int
    n_pairs: int
    n_tested: int
    references: dict[str, int]
    data_drift: dict[str, Any]
    last_sale_date: date | None
    stale: bool
    params: HealthParams
    products: pd.DataFrame  # one row a product with pairs in the window, by product_id
    check_id: str = ""
    checked_at: datetime | None = None
    duration_s: float = 0.0
    outputs: dict[str, Any] = field(default_factory=dict)  # metrics and retrain outcome
    warnings: list[str] = field(default_factory=list)  # e.g. sales that are not daily

    def summary(self) -> dict[str, Any]:
        """Everything but the per-product list (what `health_checks.result_json` keeps)."""
        return {
            "check_id": self.check_id,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "healthy": self.healthy,
            "avg_rmse": _num(self.avg_rmse),
            "p_value": _num(self.p_value),
            "drift_detected": self.drift_detected,
            "drifted_share": _num(self.drifted_share),
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "reason_kinds": list(self.reason_kinds),
            "as_of": self.as_of.isoformat(),
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "model_versions": list(self.model_versions),
            "model_version": self.model_version,
            "n_products": self.n_products,
            "n_pairs": self.n_pairs,
            "n_tested": self.n_tested,
            "references": dict(self.references),
            "drifted_products": self.drifted_products(),
            "data_drift": self.data_drift,
            "last_sale_date": self.last_sale_date.isoformat() if self.last_sale_date else None,
            "stale": self.stale,
            "thresholds": {
                "rmse_threshold": self.params.rmse_threshold,
                "fdr_alpha": self.params.fdr_alpha,
                "min_samples": self.params.min_samples,
                "stale_days": self.params.stale_days,
                "data_drift_unhealthy": self.params.data_drift_unhealthy,
            },
            "duration_s": round(self.duration_s, 4),
            **self.outputs,
        }

    def drifted_products(self, limit: int = MAX_LISTED_DRIFTED) -> list[str]:
        """Ids of the drifted products, smallest q-value first (at most `limit`)."""
        drifted = self.products[self.products["drift"]]
        return drifted.sort_values(["ks_qvalue", "product_id"])["product_id"].head(limit).tolist()

    def product_records(self) -> list[dict[str, Any]]:
        """The per-product results as JSON-ready dicts (NaN becomes None)."""
        frame = self.products.astype(object).where(self.products.notna(), None)
        return frame.to_dict("records")

    def to_dict(self) -> dict[str, Any]:
        """The full result: the summary and `products`."""
        return {**self.summary(), "products": self.product_records()}


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def needs_holdout(data: WindowData, min_samples: int) -> bool:
    """True when a product with window errors has no usable previous window: fewer than
    `min_samples` errors there, or errors of another model version."""
    window, previous = _error_masks(data)
    n = len(data.products)
    n_window = np.bincount(data.codes[window], minlength=n)
    n_previous = np.bincount(data.codes[previous], minlength=n)
    usable = (n_previous >= min_samples) & data.same_model_reference()
    return bool(((n_window > 0) & ~usable).any())


def _error_masks(data: WindowData) -> tuple[np.ndarray, np.ndarray]:
    has_pred = ~np.isnan(data.predicted)
    in_window = data.day >= data.history_days
    in_ref = (data.day >= data.history_days - data.window_days) & ~in_window
    return has_pred & in_window, has_pred & in_ref


@dataclass(frozen=True)
class _Drift:
    """Per-product KS results (arrays over all products) and the reference used."""

    pvalues: np.ndarray
    qvalues: np.ndarray
    drift: np.ndarray
    reference: np.ndarray  # previous_window | holdout | none


def _error_drift(
    data: WindowData,
    params: HealthParams,
    errors: np.ndarray,
    holdout: tuple[np.ndarray, np.ndarray] | None,
) -> _Drift:
    """KS of each product's window errors against its reference errors, BH-adjusted."""
    n_all = len(data.products)
    window, previous = _error_masks(data)
    n_prev = np.bincount(data.codes[previous], minlength=n_all)
    use_prev = (n_prev >= params.min_samples) & data.same_model_reference()
    keep = previous & use_prev[data.codes]
    ref_codes, ref_err = [data.codes[keep]], [errors[keep]]
    reference = np.where(use_prev, "previous_window", "none").astype(object)
    if holdout is not None and len(holdout[0]):
        h_codes, h_err = holdout
        n_hold = np.bincount(h_codes, minlength=n_all)
        use_hold = ~use_prev & (n_hold >= params.min_samples)
        take = use_hold[h_codes]
        ref_codes.append(h_codes[take])
        ref_err.append(h_err[take])
        reference[use_hold] = "holdout"
    ks = stats.two_sample(
        data.codes[window],
        errors[window],
        np.concatenate(ref_codes),
        np.concatenate(ref_err),
        n_all,
    )
    pvalues = stats.ks_pvalues(ks, params.min_samples)
    qvalues = stats.benjamini_hochberg(pvalues)
    reference[np.isnan(pvalues)] = "none"
    return _Drift(pvalues, qvalues, qvalues <= params.fdr_alpha, reference)


def _sales_drift(
    data: WindowData, params: HealthParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Sales of the window against the reference window, per product: (KS q-values,
    drift, Wasserstein distance over the pooled standard deviation, summary)."""
    in_window = data.day >= data.history_days
    in_ref = (data.day >= data.history_days - data.window_days) & ~in_window
    cmp = stats.two_sample(
        data.codes[in_window],
        data.units[in_window],
        data.codes[in_ref],
        data.units[in_ref],
        len(data.products),
    )
    pvalues = stats.ks_pvalues(cmp, params.min_samples)
    qvalues = stats.benjamini_hochberg(pvalues)
    drift = qvalues <= params.fdr_alpha
    with np.errstate(invalid="ignore", divide="ignore"):
        w_norm = np.where(cmp.wasserstein > 0, cmp.wasserstein / cmp.pooled_std, 0.0)
    w_norm[np.isnan(cmp.wasserstein)] = np.nan
    tested = int((~np.isnan(pvalues)).sum())
    summary = {
        "detected": bool(drift.any()),
        "p_value": _num(stats.simes(pvalues)),
        "n_tested": tested,
        "n_drifted": int(drift.sum()),
        "drifted_share": (int(drift.sum()) / tested) if tested else None,
        "mean_wasserstein": _num(float(np.nanmean(w_norm))) if (~np.isnan(w_norm)).any() else None,
        "reference_start": data.ref_start.isoformat(),
        "reference_end": (data.window_start - timedelta(days=1)).isoformat(),
        "makes_unhealthy": params.data_drift_unhealthy,
    }
    return qvalues, drift, w_norm, summary


def _reasons(
    data: WindowData,
    params: HealthParams,
    *,
    n_products: int,
    avg_rmse: float | None,
    n_drifted: int,
    n_tested: int,
    p_value: float | None,
    stale: bool,
    data_drift: dict[str, Any],
) -> tuple[list[str], list[str]]:
    """(reason texts, reason kinds) of every failed condition."""
    reasons: list[str] = []
    kinds: list[str] = []
    if n_products == 0:
        kinds.append("empty")
        reasons.append(
            "empty window: no (product, date) pairs with both sales and predictions "
            f"between {data.window_start} and {data.window_end}"
        )
    if avg_rmse is not None and avg_rmse > params.rmse_threshold:
        kinds.append("rmse")
        reasons.append(f"avg_rmse {avg_rmse:.2f} > {params.rmse_threshold:g}")
    if n_drifted:
        kinds.append("drift")
        reasons.append(
            f"forecast errors drifted in {n_drifted} of {n_tested} tested products "
            f"(BH q <= {params.fdr_alpha:g}; global p {p_value:.3g})"
        )
    if stale:
        kinds.append("stale")
        last = data.last_sale_date
        reasons.append(
            f"stale data: no sales in the {params.stale_days} days up to {data.as_of} "
            + (f"(last sales on {last})" if last else "(no sales at all)")
        )
    if params.data_drift_unhealthy and data_drift["detected"]:
        kinds.append("data_drift")
        reasons.append(
            f"sales drifted in {data_drift['n_drifted']} of {data_drift['n_tested']} tested "
            f"products (BH q <= {params.fdr_alpha:g})"
        )
    return reasons, kinds


def frequency_warnings(data: WindowData) -> list[str]:
    """A warning when the sales of the window and its history are not daily (issue 18)."""
    if data.codes.size == 0:
        return []
    dates = pd.Timestamp("2000-01-01") + pd.to_timedelta(data.day, unit="D")
    freq = detect_frequency(pd.DataFrame({"product_id": data.codes, "date": dates}))
    return [] if freq.is_daily else [freq.message() + "; the health figures assume daily sales"]


def compute_health(
    data: WindowData,
    params: HealthParams,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
) -> HealthResult:
    """Judge the model on one window: accuracy, error drift, sales drift, freshness.

    `holdout` is (product codes, errors) of the champion's holdout, the reference for
    products without enough errors in the previous window.
    """
    window, _ = _error_masks(data)
    errors = data.units - data.predicted
    metrics = stats.error_metrics(data.codes[window], errors[window], len(data.products))
    drift = _error_drift(data, params, errors, holdout)
    sales_q, sales_drift, w_norm, data_drift = _sales_drift(data, params)

    # Seasonal-naive scale from the history before the window (dense products x days).
    dense = np.full((len(data.products), data.history_days), np.nan)
    hist = data.day < data.history_days
    dense[data.codes[hist], data.day[hist]] = data.units[hist]
    rmsse = stats.rmsse(metrics.rmse, stats.seasonal_naive_scale(dense))

    listed = metrics.n > 0
    products = pd.DataFrame(
        {
            "product_id": data.products[listed].astype(str),
            "n": metrics.n[listed],
            "rmse": metrics.rmse[listed],
            "mae": metrics.mae[listed],
            "bias": metrics.bias[listed],
            "rmsse": rmsse[listed],
            "ks_pvalue": drift.pvalues[listed],
            "ks_qvalue": drift.qvalues[listed],
            "drift": drift.drift[listed],
            "reference": drift.reference[listed].astype(str),
            "sales_wasserstein": w_norm[listed],
            "sales_ks_qvalue": sales_q[listed],
            "sales_drift": sales_drift[listed],
        }
    )
    n_products = int(listed.sum())
    n_tested = int((~np.isnan(drift.pvalues)).sum())
    n_drifted = int(drift.drift.sum())
    avg_rmse = float(metrics.rmse[listed].mean()) if n_products else None
    p_value = stats.simes(drift.pvalues)
    stale = _is_stale(data.last_sale_date, data.as_of, params.stale_days)
    reasons, kinds = _reasons(
        data,
        params,
        n_products=n_products,
        avg_rmse=avg_rmse,
        n_drifted=n_drifted,
        n_tested=n_tested,
        p_value=p_value,
        stale=stale,
        data_drift=data_drift,
    )
    refs = products["reference"].value_counts()
    return HealthResult(
        as_of=data.as_of,
        window_start=data.window_start,
        window_end=data.window_end,
        healthy=not kinds,
        avg_rmse=avg_rmse,
        p_value=p_value,
        drift_detected=n_drifted > 0,
        drifted_share=(n_drifted / n_tested) if n_tested else None,
        reasons=reasons,
        reason_kinds=kinds,
        model_versions=list(data.model_versions),
        model_version=data.current_version,
        n_products=n_products,
        n_pairs=int(metrics.n.sum()),
        n_tested=n_tested,
        references={r: int(refs.get(r, 0)) for r in REFERENCES},
        data_drift=data_drift,
        last_sale_date=data.last_sale_date,
        stale=stale,
        params=params,
        products=products,
        warnings=frequency_warnings(data),
    )


def _is_stale(last_sale: date | None, as_of: date, stale_days: int) -> bool:
    """No sales in the `stale_days` days up to as_of (0 turns the test off)."""
    if stale_days <= 0:
        return False
    return last_sale is None or (as_of - last_sale).days >= stale_days

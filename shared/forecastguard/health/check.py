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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from forecastguard.config import Settings
from forecastguard.frequency import (
    DAILY,
    UNKNOWN,
    Frequency,
    detect_frequency,
    product_frequencies,
)
from forecastguard.health import coverage, stats
from forecastguard.health.phi_table import PHI_GRID
from forecastguard.health.slow_table import OMEGA_GRID
from forecastguard.health.window import NO_EPISODE, WindowData

# previous_window: the served model's errors in the days before the window; before_drift:
# the same, ending where the product's open drift episode began (issue 23).
REFERENCES = ("previous_window", "before_drift", "holdout", "none")
MAX_LISTED_DRIFTED = 100  # in the summary; every product is in health_check_products
MAX_REASON_PRODUCTS = 5  # drifted products described in words in the drift reason
MIN_NAIVE_DAYS = 28  # the seasonal-naive scale's history before the window, at least
# Products per call of the drift tests at 30 + 30 days (working memory; 2,500 before: at
# 10,000 products x (90 + 30) days the drift tests' peak 46 -> 34 MB, the same CPU)
DRIFT_CHUNK = 1250
# ... and the same number of (product, day) cells with a longer reference (REFERENCE_DAYS
# 90: 625 products a call; 180: 357), so the working memory does not grow with it.
DRIFT_CHUNK_CELLS = DRIFT_CHUNK * 60
# (product, day) cells a call of the sales tests and sales rows a call of
# product_frequencies (working memory; at 10,000 products x 120 days 150,000 and 300,000
# before: peaks 30 -> 21 and 22 -> 6 MB, the same CPU)
SALES_CHUNK_CELLS = 75_000
FREQUENCY_CHUNK_ROWS = 75_000
# Issue 23: the check runs daily; a retrain asked for drift alone needs the global p-value
# at FDR_ALPHA / RETRAIN_SPENDING, so a month of checks stays within its false-alarm
# budget (docs/health.md: monthly false retrain requests measured; 5 was not enough with
# point nulls, MIN_DRIFT_EFFECT 0).
RETRAIN_SPENDING = 10


@dataclass(frozen=True)
class HealthParams:
    """The thresholds of the check (from `Settings`)."""

    rmse_threshold: float = 18.0
    fdr_alpha: float = 0.05
    min_samples: int = 7
    stale_days: int = 3
    data_drift_unhealthy: bool = False
    # Practical significance: a drift counts when its effect is at least this big (level
    # shift in reference sd, spread ratio beyond 1 + 2 x this); 0 turns it off.
    min_drift_effect: float = 0.25

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthParams:
        """The health-check thresholds of these settings."""
        return cls(
            rmse_threshold=settings.rmse_threshold,
            fdr_alpha=settings.fdr_alpha,
            min_samples=settings.min_samples,
            stale_days=settings.stale_days,
            data_drift_unhealthy=settings.data_drift_unhealthy,
            min_drift_effect=settings.min_drift_effect,
        )


@dataclass
class HealthResult:
    """The outcome of one check; `to_dict()` is the JSON the CLI and the endpoint return."""

    as_of: date
    window_start: date
    window_end: date
    healthy: bool
    avg_rmse: float | None
    p_value: float | None  # Simes' global p-value of the per-product drift tests
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
    # The drift test's fitted model: the empirical null's spreads and the prior over phi.
    drift_model: dict[str, Any] = field(default_factory=dict)

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
                "min_drift_effect": self.params.min_drift_effect,
            },
            "drift_kinds": self.drift_kinds(),
            "persisting": int(self.products["persisting"].sum())
            if "persisting" in self.products
            else 0,
            "interval_coverage": interval_coverage(self.products),  # issue 27
            "drift_model": dict(self.drift_model),
            "retrain_level": self.params.fdr_alpha / RETRAIN_SPENDING,
            "duration_s": round(self.duration_s, 4),
            **self.outputs,
        }

    def drifted_products(self, limit: int = MAX_LISTED_DRIFTED) -> list[str]:
        """Ids of the drifted products, smallest q-value first (at most `limit`)."""
        drifted = self.products[self.products["drift"]]
        order = drifted.sort_values(["drift_qvalue", "product_id"])
        return order["product_id"].head(limit).tolist()

    def drift_kinds(self) -> dict[str, int]:
        """How many drifted products of each kind (level, scale, shape)."""
        kinds = self.products.loc[self.products["drift"], "drift_kind"]
        return {k: int((kinds == k).sum()) for k in stats.DRIFT_KINDS}

    def product_records(self) -> list[dict[str, Any]]:
        """The per-product results as JSON-ready dicts (NaN becomes None): Python values,
        as `DataFrame.astype(object).where(notna, None).to_dict("records")` gives them,
        built column by column (a fifth of its time at 10,000 products)."""
        frame = self.products
        names = [str(c) for c in frame.columns]
        columns = []
        for name in frame.columns:
            values = frame[name].to_numpy()
            if values.dtype.kind in "biuf":  # numbers and flags: Python's own
                column = values.tolist()
            else:  # anything else as pandas makes it an object (dates, Timestamps, str)
                values = frame[name].astype(object).to_numpy()
                column = list(values)
            missing = pd.isna(values)
            if missing.any():
                column = [None if m else v for v, m in zip(column, missing.tolist(), strict=True)]
            columns.append(column)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]

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
    """(window errors, reference errors): the reference is the `ref_days` days before the
    window, minus the days from where a product's open drift episode began (issue 23: a
    shift that persists is never its own reference)."""
    has_pred = ~np.isnan(data.predicted)
    in_window = data.day >= data.history_days
    in_ref = (data.day >= data.history_days - data.ref_days) & ~in_window
    if data.drift_since is not None:
        in_ref &= data.day < data.drift_since[data.codes]
    return has_pred & in_window, has_pred & in_ref


@dataclass(frozen=True)
class _Drift:
    """Per-product drift results (arrays over all products) and the reference used."""

    tests: stats.DriftTests
    decision: stats.DriftDecision
    drift: np.ndarray  # BH q <= FDR_ALPHA on the interval-null p-values
    kind: np.ndarray  # object: level | scale | None (only where drift)
    test: np.ndarray  # object: the component test that found it | None
    ks_pvalues: np.ndarray  # the shape component (KS of the prewhitened errors), reported
    ks_qvalues: np.ndarray
    reference: np.ndarray  # previous_window | holdout | none

    @property
    def pvalues(self) -> np.ndarray:
        """The products' drift p-values the verdict used (NaN: not tested)."""
        return self.decision.pvalue

    @property
    def qvalues(self) -> np.ndarray:
        """Their BH q-values."""
        return self.decision.qvalue


def _error_matrices(
    data: WindowData,
    use_prev: np.ndarray,
    holdout: tuple[np.ndarray, np.ndarray] | None,
    use_hold: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, window, weekday of every column): products x days, NaN where none.

    A previous-window reference fills the last `window_days` reference columns, so it
    ends the day before the window; a holdout fills the first columns in its stored
    order (the primary key's: by date).
    """
    n_all, wd, rd = len(data.products), data.window_days, data.ref_days
    window, previous = _error_masks(data)
    n_hold = 0
    if holdout is not None and len(holdout[0]):
        n_hold = int(np.bincount(holdout[0], minlength=n_all)[use_hold].max(initial=0))
    m = max(rd, n_hold)
    ref = np.full((n_all, m), np.nan)
    win = np.full((n_all, wd), np.nan)
    # The errors a block of rows at a time (`stats.scatter_cells`: no masked copies of
    # every row, no vector of every row's error).
    errors = (data.units, data.predicted)
    stats.scatter_cells(win, data.codes, data.day, errors, window, data.history_days)
    keep = previous & use_prev[data.codes]
    stats.scatter_cells(ref, data.codes, data.day, errors, keep, data.history_days - m)
    if n_hold:
        h_codes, h_err = holdout
        take = use_hold[h_codes]
        codes = h_codes[take]
        order = np.argsort(codes, kind="stable")
        codes, values = codes[order], h_err[take][order]
        starts = np.searchsorted(codes, codes, side="left")
        ref[codes, np.arange(len(codes)) - starts] = values
    first_day = data.history_days - m  # the day offset of reference column 0
    weekday = (data.hist_start.weekday() + first_day + np.arange(m + wd)) % 7
    return ref, win, weekday


def _drift_tests(
    data: WindowData,
    params: HealthParams,
    holdout: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[stats.DriftTests, np.ndarray]:
    """Each product's window errors against its reference errors: the drift tests of
    `stats.drift_tests` (valid under serial dependence), and the reference used.

    Products are tested in groups of the same reference width (the window's days, or a
    longer holdout), each width a product's own: a product's row never depends on which
    other products are checked with it (`product_phase` is partition-invariant).
    """
    n_all = len(data.products)
    _, previous = _error_masks(data)
    n_prev = np.bincount(data.codes[previous], minlength=n_all)
    use_prev = (n_prev >= params.min_samples) & data.same_model_reference()
    reference = np.where(use_prev, "previous_window", "none").astype(object)
    if data.drift_since is not None:
        reference[use_prev & (data.drift_since != NO_EPISODE)] = "before_drift"
    use_hold = np.zeros(n_all, bool)
    n_hold = np.zeros(n_all, np.int64)
    if holdout is not None and len(holdout[0]):
        n_hold = np.bincount(holdout[0], minlength=n_all)
        use_hold = ~use_prev & (n_hold >= params.min_samples)
        reference[use_hold] = "holdout"
    ref, win, weekday = _error_matrices(data, use_prev, holdout, use_hold)
    width = np.where(use_hold, np.maximum(n_hold, data.window_days), data.ref_days)
    m_all = ref.shape[1]
    parts: dict[str, np.ndarray] = {}
    # The distinct (holdout?, width) pairs, sorted (np.unique: no Python loop over products)
    groups = [(hold, int(w)) for hold in (False, True) for w in np.unique(width[use_hold == hold])]
    for hold, m in groups:
        same = np.flatnonzero((use_hold == hold) & (width == m))
        # In chunks of products: the same rows (a row never depends on the others), a
        # bounded working memory at 10,000 products whatever the reference's length.
        chunk = max(1, DRIFT_CHUNK_CELLS // (m + win.shape[1]))
        for start in range(0, len(same), chunk):
            rows = same[start : start + chunk]
            # A previous window ends at the last reference column, a holdout starts at 0.
            r = ref[rows, :m] if hold else ref[rows, m_all - m :]
            t = stats.drift_tests(
                r,
                win[rows],
                contiguous=use_prev[rows],
                weekday=weekday[m_all - m :],
                min_samples=params.min_samples,
            )
            for name in _DRIFT_FIELDS:
                value = getattr(t, name)
                if name not in parts:
                    parts[name] = np.empty((n_all, *value.shape[1:]), value.dtype)
                parts[name][rows] = value
    if not parts:  # no products
        t = stats.drift_tests(np.empty((0, 1)), np.empty((0, 1)), contiguous=np.zeros(0, bool))
        parts = {name: getattr(t, name) for name in _DRIFT_FIELDS}
    tests = stats.DriftTests(**parts)
    reference[~tests.tested] = "none"
    return tests, reference


def _error_drift_decision(
    tests: stats.DriftTests, params: HealthParams, reference: np.ndarray
) -> _Drift:
    """`stats.drift_decision` (the prior over phi, the empirical null, the interval null
    of MIN_DRIFT_EFFECT, BH across products: it needs every product)."""
    decision = stats.drift_decision(tests, params.fdr_alpha, params.min_drift_effect)
    kinds = np.array([None, *stats.DRIFT_KINDS], dtype=object)
    names = np.array([None, *stats.DRIFT_TESTS], dtype=object)
    shown = np.where(decision.drift, decision.kind, -1) + 1
    return _Drift(
        tests=tests,
        decision=decision,
        drift=decision.drift & (decision.kind >= 0),
        kind=kinds[shown],
        test=names[shown],
        ks_pvalues=tests.p_shape,
        ks_qvalues=stats.benjamini_hochberg(tests.p_shape),
        reference=reference,
    )


def product_order(codes: np.ndarray) -> np.ndarray | None:
    """The rows grouped by product: a stable sort of `codes` (each product's rows keep
    their order), None when they are grouped already (a window read in product order).
    Two 16-bit radix passes (numpy's stable sort of 16-bit keys), linear in the rows:
    the same permutation as `np.argsort(codes, kind="stable")`, seven times faster on
    a million shuffled rows."""
    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) < 2 or bool((codes[1:] >= codes[:-1]).all()):
        return None
    if codes.min() < 0 or codes.max() >= 1 << 32:
        return np.argsort(codes, kind="stable")
    order = np.argsort((codes & 0xFFFF).astype(np.uint16), kind="stable")
    if codes.max() >= 1 << 16:
        high = (codes[order] >> 16).astype(np.uint16)
        order = order[np.argsort(high, kind="stable")]
    return order


def _grouped(
    mask: np.ndarray | None,
    codes: np.ndarray,
    values: np.ndarray,
    n: int,
    order: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, values, bounds) of the rows in `mask` (None: all) grouped by product, each
    product's rows in their order (`order`: `product_order(codes)`), product p's at
    `bounds[p]:bounds[p + 1]`. A chunk of products is then a slice, not a mask over every
    row (a mask a chunk is chunks x rows of work: ~400 x 60M at 1M products)."""
    if order is not None:
        rows = order if mask is None else order[mask[order]]
        codes, values = codes[rows], values[rows]
    elif mask is not None:
        codes, values = codes[mask], values[mask]
    return codes, values, np.searchsorted(codes, np.arange(n + 1), side="left")


def _rows(
    codes: np.ndarray, values: np.ndarray, bounds: np.ndarray, lo: int, hi: int
) -> np.ndarray:
    """Products lo..hi-1's values as rows (products x their most values, NaN after a
    product's own), each product's in their order, from rows grouped by product
    (`_grouped`: product p's at `bounds[p]:bounds[p + 1]`)."""
    first, last = bounds[lo], bounds[hi]
    counts = np.diff(bounds[lo : hi + 1])
    out = np.full((hi - lo, int(counts.max(initial=0))), np.nan)
    code = codes[first:last]
    out[code - lo, np.arange(first, last) - bounds[code]] = values[first:last]
    return out


def _sales_tests(
    data: WindowData, params: HealthParams, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sales of the window against the reference window, per product: (KS p-values,
    Wasserstein distance over the pooled standard deviation).

    A chunk of products at a time (`SALES_CHUNK_CELLS`): `stats.two_sample`'s working
    arrays, a score of them as long as the samples, were the check's memory peak (96 MB
    above the window's data at 10,000 products x 30 days). Each product's figures are
    its own samples' (sorted and summed in the same order): the same doubles. The rows
    are grouped by product (`order`: `product_order(data.codes)`, if known), so a chunk
    is a slice (`_grouped`).
    """
    in_window = data.day >= data.history_days
    in_ref = (data.day >= data.history_days - data.window_days) & ~in_window
    n = len(data.products)
    if order is None:
        order = product_order(data.codes)
    codes_a, values_a, bounds_a = _grouped(in_window, data.codes, data.units, n, order)
    codes_b, values_b, bounds_b = _grouped(in_ref, data.codes, data.units, n, order)
    if np.isnan(values_a).any() or np.isnan(values_b).any():
        raise ValueError("two_sample: samples must not contain NaN")
    pvalues, w_norm = np.full(n, np.nan), np.full(n, np.nan)
    step = max(1, SALES_CHUNK_CELLS // (2 * data.window_days))
    for lo in range(0, max(n, 1), step):
        hi = min(lo + step, n)
        # Each product's samples as a row (`stats.two_sample_rows`: a sort along short
        # rows, not of every observation by product and value; the same doubles).
        cmp = stats.two_sample_rows(
            _rows(codes_a, values_a, bounds_a, lo, hi), _rows(codes_b, values_b, bounds_b, lo, hi)
        )
        pvalues[lo:hi] = stats.ks_pvalues(cmp, params.min_samples)
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(cmp.wasserstein > 0, cmp.wasserstein / cmp.pooled_std, 0.0)
        w[np.isnan(cmp.wasserstein)] = np.nan
        w_norm[lo:hi] = w
    return pvalues, w_norm


def _sales_drift_decision(
    part: ProductPhase, rows: pd.DataFrame, params: HealthParams
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """BH across products on the sales KS p-values: (q-values, drift, summary)."""
    pvalues = rows["sales_ks_pvalue"].to_numpy(np.float64)
    w_norm = rows["sales_wasserstein"].to_numpy(np.float64)
    qvalues = stats.benjamini_hochberg(pvalues)
    drift = qvalues <= params.fdr_alpha
    tested = int((~np.isnan(pvalues)).sum())
    summary = {
        "detected": bool(drift.any()),
        "p_value": _num(stats.simes(pvalues)),
        "n_tested": tested,
        "n_drifted": int(drift.sum()),
        "drifted_share": (int(drift.sum()) / tested) if tested else None,
        "mean_wasserstein": _num(float(np.nanmean(w_norm))) if (~np.isnan(w_norm)).any() else None,
        "reference_start": (part.window_start - timedelta(days=part.window_days)).isoformat(),
        "reference_end": (part.window_start - timedelta(days=1)).isoformat(),
        "makes_unhealthy": params.data_drift_unhealthy,
    }
    return qvalues, drift, summary


def _reasons(
    data: ProductPhase,
    params: HealthParams,
    *,
    n_products: int,
    avg_rmse: float | None,
    n_drifted: int,
    n_tested: int,
    p_value: float | None,
    stale: bool,
    data_drift: dict[str, Any],
    drift_lines: list[str] | None = None,
    kind_counts: dict[str, int] | None = None,
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
        counted = ", ".join(f"{v} {k}" for k, v in (kind_counts or {}).items() if v)
        text = (
            f"forecast errors drifted in {n_drifted} of {n_tested} tested products "
            f"({counted + '; ' if counted else ''}BH q <= {params.fdr_alpha:g} against a change "
            f"of at most {params.min_drift_effect:g}; global p {p_value:.3g})"
        )
        lines = drift_lines or []
        if lines:
            text += ": " + "; ".join(lines[:MAX_REASON_PRODUCTS])
            if len(lines) > MAX_REASON_PRODUCTS:
                text += f"; and {len(lines) - MAX_REASON_PRODUCTS} more"
        reasons.append(text)
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


def _product_frequency(
    data: WindowData, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per product: its sampling frequency (`forecastguard.frequency`) and step in days
    (0: unknown), for `global_phase` to tally as `detect_frequency` does (`order`:
    `product_order(data.codes)`, if known)."""
    n = len(data.products)
    kind = np.full(n, UNKNOWN, dtype=object)
    step = np.zeros(n, np.int64)
    if data.codes.size == 0:
        return kind, step
    # In groups of products (each product's frequency is its own), for a bounded working
    # memory (sorting int64 keys: ~40 bytes a row).
    # Rows grouped by product (`_grouped`): a group is a slice.
    if order is None:
        order = product_order(data.codes)
    codes, days, bounds = _grouped(None, data.codes, data.day, n, order)
    group = max(1, FREQUENCY_CHUNK_ROWS * n // data.codes.size)
    for first in range(0, n, group):
        rows = slice(bounds[first], bounds[min(first + group, n)])
        size = min(group, n - first)
        k, s = product_frequencies(codes[rows] - first, days[rows], size)
        kind[first : first + size], step[first : first + size] = k, s
    return kind, step


def _frequency_warnings_from_rows(rows: pd.DataFrame) -> list[str]:
    """`frequency_warnings` from the products' own frequencies (the tally of
    `detect_frequency`: the kind most products have, daily on a tie)."""
    kinds = rows["freq_kind"].to_numpy(object)
    known = kinds != UNKNOWN
    if not known.any():
        return []
    values, counts = np.unique(kinds[known].astype(str), return_counts=True)
    best = np.lexsort((values != DAILY, -counts))[0]
    kind = str(values[best])
    steps = rows["freq_step"].to_numpy(np.int64)[kinds == kind]
    freq = Frequency(kind, int(np.median(steps)), int(counts.sum()), int(counts[best]))
    return [] if freq.is_daily else [freq.message() + "; the health figures assume daily sales"]


# --- The two phases of the check (issue 24: the Beam pipeline runs the same code). ------
#
# `product_phase` computes everything that is one product's own business, partition-
# invariantly: run on a WindowData of any subset of the products (with the window's
# global facts: `WindowData.subset`) it yields, for those products, the same rows bit for
# bit as on all products. `global_phase` does what needs every product (BH, Simes, the
# sales-drift BH, the frequency tally) from the combined rows only.

_DRIFT_FIELDS = tuple(f for f in stats.DriftTests.__dataclass_fields__)


@dataclass
class ProductPhase:
    """What the per-product step yields for a batch of products (mergeable).

    `products` has one row a product of the batch (every product with sales in the
    window's history, `listed` marks those with pairs in the window), sorted by
    product_id, with every per-product quantity `global_phase` needs: accuracy, the
    drift tests' components (`t_<field>` for each `stats.DriftTests` field), the
    reference used, the sales KS p-value and Wasserstein distance, the sampling
    frequency. The other fields are the window's facts.
    """

    products: pd.DataFrame
    as_of: date
    window_days: int
    history_days: int
    model_versions: tuple[str, ...] = ()
    current_version: str | None = None
    last_sale_date: date | None = None
    n_batches: int = 1

    @property
    def window_start(self) -> date:
        """The first day of the window."""
        return self.as_of - timedelta(days=self.window_days - 1)

    @property
    def window_end(self) -> date:
        """The last day of the window (= as_of)."""
        return self.as_of


def product_phase(
    data: WindowData,
    params: HealthParams,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
) -> ProductPhase:
    """The per-product step of the check (partition-invariant; see `ProductPhase`).

    `holdout` is (product codes into `data.products`, errors) of the champion's holdout.
    """
    # The forecast errors (actual - predicted) are taken where needed, a block of rows at a
    # time (`stats.scatter_cells`), not as one more vector over every row read.
    # The rest comes first: its few columns, not the drift tests' hundred, are held while
    # the drift tests run (a lower peak of working memory). (The drift tests in a second
    # thread beside the rest held both working sets at once, RSS peak 265-268 -> 300 MB at
    # 10,000 products, for more CPU: docs/health.md.)
    rest = _other_product_columns(data, params)
    tests, reference = _drift_tests(data, params, holdout)
    columns: dict[str, Any] = {
        "product_id": data.products.astype(str),
        "listed": rest.pop("listed"),
        **{k: rest.pop(k) for k in ("n", "rmse", "mae", "bias", "rmsse")},
        "reference": reference,
        **rest,
    }
    for name in _DRIFT_FIELDS:
        value = getattr(tests, name)
        if value.ndim == 2:  # one column a value of phi on the grid
            for k in range(value.shape[1]):
                columns[f"t_{name}_{k}"] = value[:, k]
        else:
            columns[f"t_{name}"] = value
    return ProductPhase(
        products=pd.DataFrame(columns),
        as_of=data.as_of,
        window_days=data.window_days,
        history_days=data.history_days,
        model_versions=tuple(data.model_versions),
        current_version=data.current_version,
        last_sale_date=data.last_sale_date,
    )


def _other_product_columns(data: WindowData, params: HealthParams) -> dict[str, Any]:
    """`product_phase`'s columns besides the drift tests': accuracy, the sales tests, the
    sampling frequency, the open episodes and the served interval's coverage."""
    n_all = len(data.products)
    window, _ = _error_masks(data)
    errors = data.units[window] - data.predicted[window]
    metrics = stats.error_metrics(data.codes[window], errors, n_all)
    del window, errors
    order = product_order(data.codes)  # the rows grouped by product, for the next two
    sales_p, w_norm = _sales_tests(data, params, order)
    # The seasonal-naive scale on the four weeks (at least) before the window.
    naive_days = min(data.history_days, max(data.window_days, MIN_NAIVE_DAYS))
    dense = np.full((n_all, naive_days), np.nan)
    first = data.history_days - naive_days
    hist = (data.day < data.history_days) & (data.day >= first)
    dense[data.codes[hist], data.day[hist] - first] = data.units[hist]
    rmsse = stats.rmsse(metrics.rmse, stats.seasonal_naive_scale(dense))
    kind, step = _product_frequency(data, order)
    return {
        "listed": metrics.n > 0,
        "n": metrics.n,
        "rmse": metrics.rmse,
        "mae": metrics.mae,
        "bias": metrics.bias,
        "rmsse": rmsse,
        "sales_ks_pvalue": sales_p,
        "sales_wasserstein": w_norm,
        "freq_kind": kind,
        "freq_step": step,
        "episode_day": _per_product(data.drift_since, n_all, NO_EPISODE),
        "episode_checks": _per_product(data.drift_checks, n_all, 0),
        **coverage.product_columns(data, params.min_samples),  # issue 27: served interval
    }


def _per_product(values: np.ndarray | None, n: int, default: int) -> np.ndarray:
    return np.full(n, default, np.int64) if values is None else values.astype(np.int64)


def combine_phases(parts: Sequence[ProductPhase]) -> ProductPhase:
    """The product phases of disjoint batches as one: rows concatenated (by product_id),
    facts merged (model versions united, the newest last sale)."""
    if not parts:
        raise ValueError("combine_phases needs at least one part")
    first = parts[0]
    for part in parts[1:]:
        if (part.as_of, part.window_days, part.history_days) != (
            first.as_of,
            first.window_days,
            first.history_days,
        ):
            raise ValueError("combine_phases: the parts are of different windows")
    frames = [p.products for p in parts if len(p.products)]
    rows = pd.concat(frames, ignore_index=True) if frames else first.products.iloc[:0]
    if rows["product_id"].duplicated().any():
        raise ValueError("combine_phases: a product is in more than one part")
    rows = rows.sort_values("product_id", kind="stable").reset_index(drop=True)
    currents = {p.current_version for p in parts if p.current_version}
    if len(currents) > 1:
        raise ValueError(
            "combine_phases: the parts name different current models; build each batch's "
            "WindowData with the window's current_version (WindowData.subset)"
        )
    lasts = [p.last_sale_date for p in parts if p.last_sale_date is not None]
    return ProductPhase(
        products=rows,
        as_of=first.as_of,
        window_days=first.window_days,
        history_days=first.history_days,
        model_versions=tuple(sorted({v for p in parts for v in p.model_versions})),
        current_version=next(iter(currents), None),
        last_sale_date=max(lasts) if lasts else None,
        n_batches=sum(p.n_batches for p in parts),
    )


def _tests_from_rows(rows: pd.DataFrame) -> stats.DriftTests:
    """The products' `stats.DriftTests` from their `ProductPhase` rows."""
    values = {}
    for name in _DRIFT_FIELDS:
        if f"t_{name}" in rows:
            values[name] = rows[f"t_{name}"].to_numpy(np.float64)
        else:
            k = len(PHI_GRID)
            cols = [f"t_{name}_{i}" for i in range(k)]
            values[name] = rows[cols].to_numpy(np.float64).reshape(len(rows), k)
    return stats.DriftTests(**values)


def global_phase(part: ProductPhase, params: HealthParams) -> HealthResult:
    """The global step of the check: from all products' rows to the result."""
    rows = part.products
    p_cov = _coverage_pvalues(rows)  # issue 27: the coverage tests' empirical nulls
    tests = _tests_from_rows(rows)
    drift = _error_drift_decision(tests, params, rows["reference"].to_numpy(object))
    drift = _join_coverage(drift, p_cov, params)  # issue 27: the interval's coverage test
    sales_q, sales_drift, data_drift = _sales_drift_decision(part, rows, params)
    listed = rows["listed"].to_numpy(bool)
    products = pd.DataFrame(
        {
            "product_id": rows["product_id"].to_numpy(object)[listed].astype(str),
            "n": rows["n"].to_numpy(np.int64)[listed],
            "rmse": rows["rmse"].to_numpy(np.float64)[listed],
            "mae": rows["mae"].to_numpy(np.float64)[listed],
            "bias": rows["bias"].to_numpy(np.float64)[listed],
            "rmsse": rows["rmsse"].to_numpy(np.float64)[listed],
            "ks_pvalue": drift.ks_pvalues[listed],
            "ks_qvalue": drift.ks_qvalues[listed],
            "drift": drift.drift[listed],
            "drift_kind": drift.kind[listed],
            "drift_test": drift.test[listed],
            "drift_pvalue": drift.pvalues[listed],
            "drift_qvalue": drift.qvalues[listed],
            "bias_shift": tests.bias_shift[listed],
            "bias_shift_sd": tests.bias_shift_sd[listed],
            "spread_ratio": tests.spread_ratio[listed],
            "p_level": drift.decision.p_level[listed],
            "p_scale": drift.decision.p_scale[listed],
            "phi": drift.decision.phi_mean[listed],
            "reference": drift.reference[listed].astype(str),
            **_persistence(part, rows, drift.drift, listed),
            "sales_wasserstein": rows["sales_wasserstein"].to_numpy(np.float64)[listed],
            "sales_ks_qvalue": sales_q[listed],
            "sales_drift": sales_drift[listed],
        }
    )
    products = _with_coverage(products, rows, listed, p_cov)
    n_products = int(listed.sum())
    n_tested = int((~np.isnan(drift.pvalues)).sum())
    n_drifted = int(drift.drift.sum())
    avg_rmse = float(products["rmse"].mean()) if n_products else None
    p_value = stats.simes(drift.pvalues)
    stale = _is_stale(part.last_sale_date, part.as_of, params.stale_days)
    reasons, kinds = _reasons(
        part,
        params,
        n_products=n_products,
        avg_rmse=avg_rmse,
        n_drifted=n_drifted,
        n_tested=n_tested,
        p_value=p_value,
        stale=stale,
        data_drift=data_drift,
        drift_lines=drift_reasons(products),
        kind_counts={k: int((products["drift_kind"] == k).sum()) for k in stats.DRIFT_KINDS},
    )
    refs = products["reference"].value_counts()
    return HealthResult(
        as_of=part.as_of,
        window_start=part.window_start,
        window_end=part.as_of,
        healthy=not kinds,
        avg_rmse=avg_rmse,
        p_value=p_value,
        drift_detected=n_drifted > 0,
        drifted_share=(n_drifted / n_tested) if n_tested else None,
        reasons=reasons,
        reason_kinds=kinds,
        model_versions=list(part.model_versions),
        model_version=part.current_version,
        n_products=n_products,
        n_pairs=int(rows["n"].to_numpy(np.int64).sum()),
        n_tested=n_tested,
        references={r: int(refs.get(r, 0)) for r in REFERENCES},
        data_drift=data_drift,
        last_sale_date=part.last_sale_date,
        stale=stale,
        params=params,
        products=products,
        warnings=_frequency_warnings_from_rows(rows),
        drift_model=_drift_model(drift.decision),
    )


def _persistence(
    part: ProductPhase, rows: pd.DataFrame, drift: np.ndarray, listed: np.ndarray
) -> dict[str, np.ndarray]:
    """Per listed product: is its drift persisting (flagged by earlier checks of this model
    and not passed since), since when (the first day of the window that first flagged it;
    this window's for a new drift) and for how many checks, this one included."""
    day = rows["episode_day"].to_numpy(np.int64)
    before = rows["episode_checks"].to_numpy(np.int64)
    open_ = day != NO_EPISODE
    hist_start = part.window_start - timedelta(days=part.history_days)
    since = np.full(len(rows), None, dtype=object)
    since[drift & ~open_] = part.window_start
    for i in np.flatnonzero(drift & open_):
        since[i] = hist_start + timedelta(days=int(day[i]))
    days = np.array([None if d is None else (part.as_of - d).days + 1 for d in since], object)
    return {
        "persisting": (drift & open_)[listed],
        "drift_checks": np.where(drift, np.where(open_, before + 1, 1), 0)[listed],
        "drift_since": since[listed],
        "drift_days": days[listed],
    }


def _drift_model(decision: stats.DriftDecision) -> dict[str, Any]:
    """What the drift test fitted across products: the empirical null's spreads (a change
    shared by most products is absorbed into them), the prior over phi and, where the
    slow component was fitted (500 products or more with a long enough reference), the
    prior over its variance share omega (`slow_share_mean`: the catalogue's mean share)."""
    prior = decision.prior
    model = {
        "null_sd_level": round(decision.null_sd_level, 4),
        "null_sd_scale": round(decision.null_sd_scale, 4),
        "phi_prior_mean": round(float(prior @ PHI_GRID), 4),
        "phi_prior": [round(float(v), 4) for v in prior],
    }
    if decision.slow_fitted and decision.slow_prior is not None:
        model["slow_share_mean"] = round(float(decision.slow_prior @ OMEGA_GRID), 4)
        model["slow_prior"] = [round(float(v), 4) for v in decision.slow_prior]
    return model


def compute_health(
    data: WindowData,
    params: HealthParams,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
) -> HealthResult:
    """Judge the model on one window: accuracy, error drift, sales drift, freshness.

    `holdout` is (product codes, errors) of the champion's holdout, the reference for
    products without enough errors in the previous window. The same as
    `global_phase(product_phase(data, params, holdout), params)`.
    """
    return global_phase(product_phase(data, params, holdout), params)


def retrain_held(summary: dict[str, Any]) -> str | None:
    """Why an unhealthy check asks for no retrain, if drift alone made it unhealthy and its
    global p-value is above the retrain level (FDR_ALPHA / RETRAIN_SPENDING); else None.

    The check runs daily over a sliding 30-day window: each check at FDR_ALPHA would let
    10-13 % of 30-day periods ask for a retrain with nothing wrong (measured), and each
    request is a training run. The flagged products stay reported; other reasons (RMSE)
    retrain as before.
    """
    if set(summary.get("reason_kinds") or ()) != {"drift"}:
        return None
    p_value = summary.get("p_value")
    level = float(summary["thresholds"]["fdr_alpha"]) / RETRAIN_SPENDING
    if p_value is None or p_value <= level:
        return None
    return (
        f"drift found (global p {p_value:.3g}) but not at the retrain level {level:.3g} "
        f"(FDR_ALPHA / {RETRAIN_SPENDING}): daily checks spend a month's false-alarm budget"
    )


def _is_stale(last_sale: date | None, as_of: date, stale_days: int) -> bool:
    """No sales in the `stale_days` days up to as_of (0 turns the test off)."""
    if stale_days <= 0:
        return False
    return last_sale is None or (as_of - last_sale).days >= stale_days


def drift_reason(row: Any) -> str:
    """One drifted product in words, e.g. "P0015: forecasts 12.3 units too low since the
    window began (2.1 sd)". Errors are actual - predicted: a positive shift means the
    forecasts fell short."""
    pid, kind = row.product_id, row.drift_kind
    text = _drift_words(row, pid, kind)
    if getattr(row, "persisting", False):
        text = text.replace(" since the window began", "")
        text += (
            f"; persisting: flagged by {int(row.drift_checks)} checks in a row, "
            f"{row.drift_days} days since {row.drift_since}"
        )
    return text


def _drift_words(row: Any, pid: str, kind: Any) -> str:
    if getattr(row, "drift_test", None) == COVERAGE_TEST:
        scale = float(getattr(row, "coverage_scale", np.nan))
        narrow = scale > 1 if np.isfinite(scale) else row.coverage < coverage.NOMINAL
        spread = f", errors {scale:.2g} times its spread" if np.isfinite(scale) else ""
        return (
            f"{pid}: its 80 % interval covered {row.coverage:.0%} of the window's days"
            f"{spread} ({'too narrow' if narrow else 'too wide'}; interval score "
            f"{row.interval_score:.3g})"
        )
    if kind == "level":
        side = "too low" if row.bias_shift > 0 else "too high"
        return (
            f"{pid}: forecasts {abs(row.bias_shift):.3g} units {side} since the window "
            f"began ({abs(row.bias_shift_sd):.2g} sd)"
        )
    if kind == "scale":
        way = "wider" if row.spread_ratio >= 1 else "narrower"
        return f"{pid}: forecast errors {row.spread_ratio:.2g} times as spread ({way})"
    return (
        f"{pid}: forecast errors changed shape (bias shift {row.bias_shift_sd:+.2g} sd, "
        f"spread ratio {row.spread_ratio:.2g})"
    )


def drift_reasons(products: pd.DataFrame) -> list[str]:
    """The drifted products in words, smallest q-value first."""
    drifted = products[products["drift"]].sort_values(["drift_qvalue", "product_id"])
    return [drift_reason(row) for row in drifted.itertuples(index=False)]


# --- Issue 27: the served interval's coverage (`forecastguard.health.coverage`). --------
#
# `product_phase` adds each product's coverage tests (its own rows only); here their
# empirical nulls are fitted over all products, the p-value joins the drift tests'
# (Bonferroni per product) before BH, and a product found
# by it is a `scale` drift whose test is "coverage". Products without a served interval
# keep the drift tests' p-values, so a database without intervals is judged as before.

COVERAGE_TEST = "coverage"


def _coverage_pvalues(rows: pd.DataFrame) -> np.ndarray | None:
    """Each product's final coverage p-value (`coverage.global_pvalues`: the hit and scale
    tests with their empirical nulls over all products); None without coverage columns.
    (Returned, not assigned to the rows: a new column copied the hundred-odd columns.)"""
    if "coverage_pvalue" not in rows:
        return None
    if not len(rows):
        return rows["coverage_pvalue"].to_numpy(np.float64)
    p, _ = coverage.global_pvalues(rows)
    return p


def _join_coverage(drift: _Drift, p_cov: np.ndarray | None, params: HealthParams) -> _Drift:
    """The drift decision with the coverage p-values `p_cov` joined (unchanged without
    them)."""
    from dataclasses import replace

    if p_cov is None or np.isnan(p_cov).all():
        return drift
    d = drift.decision
    joint, by_cov = coverage.join_pvalues(d.pvalue, p_cov)
    qvalue = stats.benjamini_hochberg(joint)
    flagged = qvalue <= params.fdr_alpha
    kinds = np.array([None, *stats.DRIFT_KINDS], dtype=object)
    names = np.array([None, *stats.DRIFT_TESTS], dtype=object)
    own = np.where(flagged & ~by_cov, d.test, -1) + 1  # the drift test's own finding
    kind = np.where(flagged & by_cov, "scale", kinds[own]).astype(object)
    test = np.where(flagged & by_cov, COVERAGE_TEST, names[own]).astype(object)
    found = flagged & (by_cov | (d.test >= 0))
    return replace(
        drift,
        decision=replace(d, pvalue=joint, qvalue=qvalue, drift=flagged),
        drift=found,
        kind=np.where(found, kind, None),
        test=np.where(found, test, None),
    )


def _with_coverage(
    products: pd.DataFrame, rows: pd.DataFrame, listed: np.ndarray, p_cov: np.ndarray | None
) -> pd.DataFrame:
    """The result's per-product table with the coverage columns (when the rows have them;
    `p_cov`: the final coverage p-values, `_coverage_pvalues`)."""
    cols = ("coverage", "coverage_n", "coverage_pvalue", "interval_score")
    if p_cov is None or not set(cols) <= set(rows.columns):
        return products
    values = {c: rows[c].to_numpy(np.float64) for c in cols}
    values["coverage_pvalue"] = p_cov
    out = products.assign(**{c: v[listed] for c, v in values.items()})
    if "coverage_scale_ratio" in rows:  # the scale test's: errors in the interval's spread
        ratio = rows["coverage_scale_ratio"].to_numpy(np.float64)[listed]
        out = out.assign(coverage_scale=np.sqrt(ratio))
    return out


def interval_coverage(products: pd.DataFrame) -> float | None:
    """The share of the window's days with a served interval that fell inside it (the
    metrics' aggregate; None without intervals)."""
    if "coverage" not in products or "coverage_n" not in products:
        return None
    cov = products["coverage"].to_numpy(np.float64)
    n = products["coverage_n"].to_numpy(np.float64)
    ok = np.isfinite(cov)
    return float((cov[ok] * n[ok]).sum() / n[ok].sum()) if ok.any() and n[ok].sum() else None

"""Show a health result: JSON for machines, a short report with a table for people."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from forecastguard.health.check import HealthResult
from forecastguard.safetext import terminal_safe


def to_json(result: HealthResult) -> str:
    """The full result (summary and every product) as JSON."""
    return json.dumps(result.to_dict(), default=str, indent=2)


def worst_first(products: pd.DataFrame) -> pd.DataFrame:
    """Products ordered worst first: drifted ones, then by RMSSE (else RMSE), descending."""
    if products.empty:
        return products
    key = products["rmsse"].where(products["rmsse"].notna(), -1.0)
    frame = products.assign(_drift=products["drift"].astype(int), _key=key)
    order = frame.sort_values(
        ["_drift", "_key", "rmse", "product_id"], ascending=[False, False, False, True]
    )
    return order.drop(columns=["_drift", "_key"])


def _fmt(value: object, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return format(value, spec)


MAX_PRODUCT_CHARS = 20  # longer ids are cut (with "~") so the table stays within 120 columns
LEGEND = (
    "effect: change of the forecast errors (actual - predicted) since the reference "
    "(ref);\nq: the drift test's BH q-value; drift: level or scale (+: persisting, flagged "
    "by earlier checks too), - for none"
)
_REFERENCE = {
    "previous_window": "previous",
    "before_drift": "pre-drift",
    "holdout": "holdout",
    "none": "none",
}


def _drift_cell(row: object) -> str:
    """The drift column: its kind, "+" when the drift persists from earlier checks."""
    drift, kind = getattr(row, "drift", False), getattr(row, "drift_kind", None)
    if not drift:
        return "-"
    text = str(kind) if kind else "yes"
    return text + ("+" if getattr(row, "persisting", False) else "")


def _product(pid: object) -> str:
    text = terminal_safe(pid)  # an ESC or a zero-width space shows as an escape
    return text if len(text) <= MAX_PRODUCT_CHARS else text[: MAX_PRODUCT_CHARS - 1] + "~"


def effect_text(row: Any) -> str:
    """The size of a product's change in the errors, short: for a drift of kind level
    "12.3 too low (2.1 sd)" (forecasts below the sales; errors are actual - predicted),
    scale "spread x2.0", shape or no drift both figures ("+0.3 sd, spread x1.1"),
    "-" when the product was not tested."""
    shift, shift_sd, ratio = row.bias_shift, row.bias_shift_sd, row.spread_ratio
    if row.drift_kind == "level" and _finite(shift) and _finite(shift_sd):
        side = "too low" if shift > 0 else "too high"
        return f"{abs(shift):.3g} {side} ({abs(shift_sd):.2g} sd)"
    if row.drift_kind == "scale" and _finite(ratio):
        return f"spread x{ratio:.2g}"
    if not (_finite(shift_sd) or _finite(ratio)):
        return "-"
    return f"{_fmt(shift_sd, '+.2g')} sd, spread x{_fmt(ratio, '.2g')}"


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and bool(np.isfinite(value))


def to_text(result: HealthResult, top: int = 20) -> str:
    """A readable report: verdict, reasons, figures and the `top` worst products, one
    row each: accuracy (rmse, rmsse, bias), the drift's kind, its effect and q-value.
    Data-derived text (ids, reasons) has its control and invisible characters escaped."""
    verdict = "HEALTHY" if result.healthy else "UNHEALTHY"
    lines = [
        f"model {verdict}  window {result.window_start} .. {result.window_end}  "
        f"model {terminal_safe(result.model_version or '-')}",
        f"avg_rmse {_fmt(result.avg_rmse, '.3f')} (threshold {result.params.rmse_threshold:g})  "
        f"global p {_fmt(result.p_value, '.3g')}  drift {'yes' if result.drift_detected else 'no'}"
        f"  products {result.n_products} ({result.n_tested} tested)  pairs {result.n_pairs}",
    ]
    refs = result.references
    lines.append(
        f"reference: previous window {refs.get('previous_window', 0)}, holdout "
        f"{refs.get('holdout', 0)}, none (fewer than {result.params.min_samples} errors) "
        f"{refs.get('none', 0)}"
    )
    dd = result.data_drift
    lines.append(
        f"sales drift (information): {dd['n_drifted']} of {dd['n_tested']} products, "
        f"mean normalised Wasserstein {_fmt(dd['mean_wasserstein'], '.3f')}"
    )
    # Reasons and warnings quote product ids: printed with their control characters escaped.
    for reason in result.reasons:
        lines.append(f"  - {terminal_safe(reason)}")
    for warning in result.warnings:
        lines.append(f"  warning: {terminal_safe(warning)}")
    if result.products.empty:
        return "\n".join(lines)
    worst = worst_first(result.products).head(top)
    header = ("product", "n", "rmse", "rmsse", "bias", "drift", "effect", "q", "ref")
    rows = [
        (
            _product(r.product_id),
            str(r.n),
            _fmt(r.rmse, ".2f"),
            _fmt(r.rmsse, ".2f"),
            _fmt(r.bias, "+.2f"),
            _drift_cell(r),
            effect_text(r),
            _fmt(r.drift_qvalue, ".2g"),
            _REFERENCE.get(str(r.reference), str(r.reference)),
        )
        for r in worst.itertuples(index=False)
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines.append("")
    lines.append(f"worst {len(rows)} of {result.n_products} products:")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines.append(LEGEND)
    return "\n".join(lines)

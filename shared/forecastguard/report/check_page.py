"""One health check's HTML report: a single self-contained page (inline SVG and CSS).

It shows the verdict and its reasons, the figures against their thresholds, the spread
of per-product RMSE and RMSSE, the references used, the drift of the sales themselves,
and, for a bounded number of products (the drifted ones first, then the worst by RMSSE),
actual against forecast over the reference period and the window with both periods'
error distributions side by side, with the drift kind and effect when the check gives
them. Nothing is fetched when the page is viewed: it opens offline, from a file or a
bucket. A 10,000-product check's page stays a few hundred KB (docs/reports.md).

The check writes it through the artifact store to `health/<check_id>/report.html`
(`attach_report`); `forecastguard health --html FILE` writes one to a file.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    import sqlalchemy as sa

    from forecastguard.health.check import HealthResult
    from forecastguard.health.window import WindowData
    from forecastguard.storage import ArtifactStore

log = get_logger(__name__)

MAX_DRIFTED_PLOTS = 6  # drifted products drawn (smallest q-value first)
MAX_WORST_PLOTS = 6  # then the worst of the others by RMSSE
LATEST_KEY = "health/latest/report.html"  # a copy of the newest check's report
TABLE_ROWS = 25  # rows of the worst-products table
SALES_DRIFT_ROWS = 10
_CHECK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Per-product drift columns of the calibrated drift test (issue 13), shown when present.
DRIFT_COLUMNS = (
    "drift_kind",
    "drift_test",
    "drift_pvalue",
    "drift_qvalue",
    "bias_shift",
    "bias_shift_sd",
    "spread_ratio",
)


def report_key(check_id: str) -> str:
    """The artifact key of a check's report: `health/<check_id>/report.html`."""
    if not _CHECK_ID.match(check_id or ""):
        raise ValueError(f"not a health check id: {check_id!r}")
    return f"health/{check_id}/report.html"


def browser_url(uri: str | None) -> str | None:
    """An address a person can open: a `gs://` object becomes its authenticated
    Cloud Storage URL (opens in the browser for anyone with read access)."""
    if not uri:
        return uri
    if uri.startswith("gs://"):
        return "https://storage.cloud.google.com/" + quote(uri[len("gs://") :])
    return uri


@functools.cache
def _environment() -> Any:
    """The Jinja2 environment of the page templates (built once, on first use)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("forecastguard.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = fmt
    env.filters["pct"] = lambda v: "–" if _missing(v) else f"{100 * float(v):.1f} %"
    return env


def render_template(name: str, **context: Any) -> str:
    """Render one of the report templates."""
    return _environment().get_template(name).render(**context)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and not math.isfinite(value))


def fmt(value: Any, spec: str = ".3g") -> str:
    """A number for a table cell; '–' for None/NaN."""
    if _missing(value):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


@dataclass
class ProductPanel:
    """One product's pictures and figures in the report."""

    product_id: str
    why: str
    figures: dict[str, Any]
    series_svg: str = ""
    errors_svg: str = ""
    notes: list[str] = field(default_factory=list)


def worst_order(products: pd.DataFrame) -> np.ndarray:
    """Row positions worst first: drifted ones, then by RMSSE (missing last), then RMSE,
    then product id — `render.worst_first`'s order, by numpy (10,000 rows in a millisecond)."""
    drift = products["drift"].to_numpy(bool)
    rmsse = products["rmsse"].to_numpy(float)
    rmse = products["rmse"].to_numpy(float)
    key = np.where(np.isnan(rmsse), -1.0, rmsse)
    ids = products["product_id"].to_numpy(str)
    return np.lexsort((ids, -np.nan_to_num(rmse, nan=-1.0), -key, ~drift))


def pick_products(products: pd.DataFrame) -> list[tuple[str, str]]:
    """(product id, why) of the products drawn: drifted first, then worst by RMSSE."""
    if products.empty:
        return []
    q = "drift_qvalue" if "drift_qvalue" in products else "ks_qvalue"
    drifted = products[products["drift"].to_numpy(bool)].sort_values([q, "product_id"])
    picked = [(p, "drifted") for p in drifted["product_id"].head(MAX_DRIFTED_PLOTS)]
    ids = products["product_id"].to_numpy(object)
    drift = products["drift"].to_numpy(bool)
    worst = [ids[i] for i in worst_order(products) if not drift[i]][:MAX_WORST_PLOTS]
    picked += [(p, "worst RMSSE") for p in worst]
    return picked


def _day_ticks(lo: int, hi: int, start: date, n: int = 6) -> list[tuple[float, str]]:
    step = max(1, (hi - lo) // n)
    return [(d, (start + timedelta(days=d)).strftime("%b %d")) for d in range(lo, hi + 1, step)]


def _panel(
    pid: str,
    why: str,
    row: dict[str, Any],
    data: WindowData | None,
    holdout: tuple[np.ndarray, np.ndarray] | None,
) -> ProductPanel:
    from forecastguard.report import svg

    figures = {
        k: row.get(k)
        for k in ("n", "rmse", "rmsse", "mae", "bias", "reference", "ks_qvalue", "drift")
    }
    figures.update({k: row.get(k) for k in DRIFT_COLUMNS if k in row})
    figures["sales_drift"] = row.get("sales_drift")
    figures["sales_wasserstein"] = row.get("sales_wasserstein")
    figures.update({k: row.get(k) for k in ("coverage", "interval_score") if k in row})
    panel = ProductPanel(pid, why, figures)
    if data is None:
        panel.notes.append("the window's daily data was not available to draw")
        return panel
    code = int(np.searchsorted(data.products, pid))
    if code >= len(data.products) or data.products[code] != pid:
        panel.notes.append("no daily data for this product")
        return panel
    rows = np.flatnonzero(data.codes == code)
    day, units, pred = data.day[rows], data.units[rows], data.predicted[rows]
    hd, wd = data.history_days, data.window_days
    lo, hi = hd - wd, hd + wd - 1
    keep = day >= lo
    dense_actual = np.full(hi - lo + 1, np.nan)
    dense_pred = np.full(hi - lo + 1, np.nan)
    dense_actual[day[keep] - lo] = units[keep]
    dense_pred[day[keep] - lo] = pred[keep]
    bands = []
    if data.lower is not None and data.upper is not None:  # the served P10–P90 (issue 27)
        dense_lo, dense_hi = np.full(hi - lo + 1, np.nan), np.full(hi - lo + 1, np.nan)
        dense_lo[day[keep] - lo] = data.lower[rows][keep]
        dense_hi[day[keep] - lo] = data.upper[rows][keep]
        if np.isfinite(dense_lo).any():
            bands.append(
                svg.Band("served 80 % interval (P10–P90)", dense_lo, dense_hi, svg.FORECAST)
            )
    x = np.arange(lo, hi + 1)
    reference = str(row.get("reference") or "none")
    ref_label = {
        "previous_window": "reference: previous window",
        "holdout": "before the window (reference: holdout)",
    }.get(reference, "before the window (no reference)")
    panel.series_svg = svg.line_chart(
        title=f"{pid}: actual vs forecast sales, units per day",
        x=x,
        series=[
            svg.Series("actual", dense_actual, svg.ACTUAL),
            svg.Series("forecast", dense_pred, svg.FORECAST, dash="5,3"),
        ],
        x_label=f"day ({data.ref_start} to {data.window_end})",
        y_label="units per day",
        x_ticks=_day_ticks(lo, hi, data.hist_start),
        width=640,
        spans=[
            svg.Span(lo - 0.5, hd - 0.5, ref_label, svg.REFERENCE),
            svg.Span(hd - 0.5, hi + 0.5, "window", svg.WINDOW),
        ],
        bands=bands,
    )
    err = units - pred
    ok = np.isfinite(err)
    window_err = err[ok & (day >= hd)]
    if reference == "previous_window":
        ref_err = err[ok & (day >= lo) & (day < hd)]
        ref_name = "previous window"
    elif reference == "holdout" and holdout is not None:
        ref_err = holdout[1][holdout[0] == code]
        ref_name = "champion's holdout"
    else:
        ref_err = np.array([])
        ref_name = "no reference"
    panel.errors_svg = svg.histogram(
        title=f"{pid}: forecast errors, window vs {ref_name}",
        groups=[
            ("window", window_err, svg.WINDOW),
            (ref_name, ref_err, svg.REFERENCE),
        ],
        x_label="actual − forecast (units per day; > 0: forecast too low)",
        rules=[svg.Rule(0.0, "no error", svg.MUTED, axis="x")],
        bins=16,
        width=440,
    )
    return panel


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _figures(summary: dict[str, Any], result: HealthResult) -> list[dict[str, Any]]:
    from forecastguard.report import svg

    th = summary.get("thresholds", {})
    dd = summary.get("data_drift") or {}
    alpha = th.get("fdr_alpha", 0.05)
    n_drifted = int(result.products["drift"].sum()) if not result.products.empty else 0
    rows = [
        {
            "name": "average RMSE (units per day)",
            "value": fmt(summary.get("avg_rmse")),
            "threshold": f"≤ {th.get('rmse_threshold', 0):g} (RMSE_THRESHOLD)",
            "bad": "rmse" in summary.get("reason_kinds", []),
            "bar": svg.bullet(summary.get("avg_rmse"), float(th.get("rmse_threshold", 0))),
        },
        {
            "name": "products whose forecast errors drifted",
            "value": f"{n_drifted:,} of {summary.get('n_tested', 0):,} tested",
            "threshold": f"none at BH q ≤ {alpha:g} (FDR_ALPHA)",
            "bad": "drift" in summary.get("reason_kinds", []),
            "bar": "",
        },
        {
            "name": "drifted share",
            "value": fmt(summary.get("drifted_share"), ".1%"),
            "threshold": "0 %",
            "bad": bool(summary.get("drifted_share")),
            "bar": "",
        },
        {
            "name": "global p-value of the drift tests (Simes)",
            "value": fmt(summary.get("p_value")),
            "threshold": f"information (small: some product drifted; α {alpha:g})",
            "bad": False,
            "bar": "",
        },
        {
            "name": "newest sales day",
            "value": summary.get("last_sale_date") or "none",
            "threshold": f"within {th.get('stale_days', 0)} days of {summary.get('as_of')} "
            "(STALE_DAYS)",
            "bad": bool(summary.get("stale")),
            "bar": "",
        },
        {
            "name": "products whose sales drifted",
            "value": f"{dd.get('n_drifted', 0):,} of {dd.get('n_tested', 0):,} tested",
            "threshold": "makes unhealthy (DATA_DRIFT_UNHEALTHY)"
            if dd.get("makes_unhealthy")
            else "information only (DATA_DRIFT_UNHEALTHY=0)",
            "bad": "data_drift" in summary.get("reason_kinds", []),
            "bar": "",
        },
    ]
    if th.get("min_drift_effect") is not None:
        rows.append(
            {
                "name": "smallest effect that counts as drift",
                "value": fmt(th.get("min_drift_effect")),
                "threshold": "MIN_DRIFT_EFFECT (reference sd, or spread ratio − 1)",
                "bad": False,
                "bar": "",
            }
        )
    return rows


def render_check_report(
    result: HealthResult,
    data: WindowData | None = None,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    history_href: str | None = None,
) -> str:
    """The check's report as one self-contained HTML page.

    `data` (the window the check read) and `holdout` (its holdout errors, if it used
    them) give the per-product pictures; without `data` the page has the figures only.
    """
    from forecastguard.report import svg

    summary = result.summary()
    products = result.products
    picked = pick_products(products)
    chosen = products[products["product_id"].isin([p for p, _ in picked])]
    records = {r["product_id"]: r for r in _records(chosen)}
    panels = [_panel(pid, why, records[pid], data, holdout) for pid, why in picked]
    th = summary["thresholds"]
    charts = []
    if not products.empty:
        rmse = products["rmse"].to_numpy(float)
        charts.append(
            svg.histogram(
                title=f"Per-product RMSE across {len(products):,} products (units per day)",
                groups=[("products", rmse, svg.WINDOW)],
                x_label="RMSE in the window (units per day)",
                y_label="share of products (%)",
                rules=[
                    svg.Rule(float(th["rmse_threshold"]), "threshold (on the average)", axis="x"),
                    svg.Rule(
                        float(summary["avg_rmse"] or math.nan), "average", svg.ACTUAL, axis="x"
                    ),
                ],
                bins=30,
            )
        )
        charts.append(
            svg.histogram(
                title=f"Per-product RMSSE across {len(products):,} products",
                groups=[("products", products["rmsse"].to_numpy(float), svg.WINDOW)],
                x_label="RMSSE (RMSE over the seasonal-naive error; 1 = as good as last week)",
                y_label="share of products (%)",
                rules=[svg.Rule(1.0, "1 = seasonal naive", svg.THRESHOLD, axis="x")],
                bins=30,
            )
        )
    table = (
        _records(products.iloc[worst_order(products)[:TABLE_ROWS]]) if not products.empty else []
    )
    sales = []
    if not products.empty and "sales_drift" in products:
        drifted_sales = products[products["sales_drift"].astype(bool)]
        sales = _records(
            drifted_sales.sort_values("sales_wasserstein", ascending=False).head(SALES_DRIFT_ROWS)
        )
    dd = summary.get("data_drift") or {}
    refs = summary.get("references") or {}
    return render_template(
        "check.html.j2",
        s=summary,
        healthy=bool(summary["healthy"]),
        figures=_figures(summary, result),
        charts=charts,
        panels=panels,
        table=table,
        drift_columns=[c for c in DRIFT_COLUMNS if c in products],
        sales=sales,
        data_drift=dd,
        refs=refs,
        window_colour=svg.WINDOW,
        reference_colour=svg.REFERENCE,
        history_href=history_href,
        max_drifted=MAX_DRIFTED_PLOTS,
        max_worst=MAX_WORST_PLOTS,
    )


def render_from_database(engine: sa.Engine, result: HealthResult) -> str:
    """The report of `result`, its pictures read again from the database (the CLI's
    `health --html`: the service does not hand back the window it read)."""
    from forecastguard.health.window import load_residuals, load_window

    window_days = (result.window_end - result.window_start).days + 1
    data = load_window(engine, result.as_of, window_days)
    holdout = None
    if result.references.get("holdout") and result.model_version:
        holdout = load_residuals(engine, result.model_version, data.products)
    return render_check_report(result, data, holdout)


@functools.lru_cache(maxsize=4)
def _store(uri: str) -> ArtifactStore:
    from forecastguard.storage import open_store

    return open_store(uri)


def attach_report(
    artifact_uri: str,
    result: HealthResult,
    data: WindowData | None,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    store: ArtifactStore | None = None,
) -> str | None:
    """Write the check's report to `<artifact_uri>/health/<check_id>/report.html` (and a
    copy to `health/latest/report.html`) and record its address in `result.outputs`
    (`report_uri`, and `report_url` to open it).

    Never raises: a failure is logged and kept as `report_error`, and the check goes on
    (the report is a view; the stored result is the record).
    """
    try:
        html = render_check_report(result, data, holdout)
        store = store or _store(artifact_uri)
        uri = store.write_text(report_key(result.check_id), html, "text/html; charset=utf-8")
        # A fixed address for the newest report (the alert policy's documentation links it).
        store.write_text(LATEST_KEY, html, "text/html; charset=utf-8")
    except Exception as exc:
        log.exception("writing the health report failed", extra={"check_id": result.check_id})
        result.outputs["report_uri"] = None
        result.outputs["report_error"] = f"{type(exc).__name__}: {exc}"
        return None
    result.outputs["report_uri"] = uri
    result.outputs["report_url"] = browser_url(uri)
    log.info("health report written", extra={"uri": uri, "bytes": len(html.encode())})
    return uri

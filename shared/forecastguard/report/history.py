"""The history pages: the last checks as trends, and one product's own history.

Read from the database (`health_checks`, `health_check_products`, `retrain_requests`,
`model_registry`, `sales`, `predictions`) in a handful of queries, drawn as inline SVG.
Links are made by the caller (`Links`): the pages server links to its own routes, a
static page written by the demo links to the report files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import sqlalchemy as sa

from forecastguard.db.schema import (
    health_check_products,
    health_checks,
    model_registry,
    predictions,
    retrain_requests,
    sales,
)
from forecastguard.report.check_page import fmt, render_template

DEFAULT_CHECKS = 60
MAX_CHECKS = 1000
PRODUCT_DAYS = 180  # days of a product's sales drawn on its page
MAX_LISTED_PRODUCTS = 40


@dataclass(frozen=True)
class Links:
    """How pages link to each other (None: no link)."""

    check: Callable[[str, dict[str, Any]], str | None] = lambda cid, s: f"/checks/{cid}"
    product: Callable[[str], str | None] | None = lambda pid: "/products/" + quote(pid, safe="")
    history: str | None = "/"


def _check_rows(conn: sa.Connection, limit: int) -> list[dict[str, Any]]:
    hc = health_checks
    rows = conn.execute(
        sa.select(
            hc.c.id,
            hc.c.checked_at,
            hc.c.as_of,
            hc.c.window_start,
            hc.c.window_end,
            hc.c.healthy,
            hc.c.avg_rmse,
            hc.c.p_value,
            hc.c.drifted_share,
            hc.c.n_products,
            hc.c.result_json,
        )
        .order_by(hc.c.checked_at.desc(), hc.c.id.desc())
        .limit(limit)
    ).mappings()
    out = []
    for r in rows:
        row = dict(r)
        try:
            summary = json.loads(row.pop("result_json") or "{}")
        except json.JSONDecodeError:
            summary = {}
        row["summary"] = summary if isinstance(summary, dict) else {}
        out.append(row)
    out.reverse()
    return out


def load_history(engine: sa.Engine, limit: int = DEFAULT_CHECKS) -> dict[str, Any]:
    """The last `limit` checks (oldest first) with their average RMSSE, the retrain
    requests and registered models of that period, and the products that drifted."""
    hcp = health_check_products
    with engine.connect() as conn:
        checks = _check_rows(conn, limit)
        ids = [c["id"] for c in checks]
        rmsse: dict[str, float] = {}
        drifted: list[tuple[str, int]] = []
        if ids:
            rmsse = {
                cid: value
                for cid, value in conn.execute(
                    sa.select(hcp.c.health_check_id, sa.func.avg(hcp.c.rmsse))
                    .where(hcp.c.health_check_id.in_(ids))
                    .group_by(hcp.c.health_check_id)
                )
            }
            count = sa.func.count().label("n")
            drifted = [
                (pid, int(n))
                for pid, n in conn.execute(
                    sa.select(hcp.c.product_id, count)
                    .where(hcp.c.health_check_id.in_(ids), hcp.c.drift.is_(True))
                    .group_by(hcp.c.product_id)
                    .order_by(count.desc(), hcp.c.product_id)
                    .limit(MAX_LISTED_PRODUCTS)
                )
            ]
        since = checks[0]["checked_at"] - timedelta(days=1) if checks else datetime.min
        rr, reg = retrain_requests, model_registry
        retrains = [
            dict(r)
            for r in conn.execute(
                sa.select(
                    rr.c.request_id,
                    rr.c.status,
                    rr.c.reason,
                    rr.c.health_check_id,
                    rr.c.model_version,
                    rr.c.created_at,
                    rr.c.finished_at,
                )
                .where(rr.c.created_at >= since)
                .order_by(rr.c.created_at)
            ).mappings()
        ]
        models = [
            dict(r)
            for r in conn.execute(
                sa.select(
                    reg.c.model_version,
                    reg.c.status,
                    reg.c.kind,
                    reg.c.rmsse,
                    reg.c.created_at,
                    reg.c.promoted_at,
                    reg.c.decision_reason,
                )
                .where(reg.c.created_at >= since)
                .order_by(reg.c.created_at)
            ).mappings()
        ]
    for c in checks:
        c["avg_rmsse"] = rmsse.get(c["id"])
        c["model_version"] = c["summary"].get("model_version")
    return {"checks": checks, "retrains": retrains, "models": models, "drifted": drifted}


def _position(times: list[datetime], when: datetime | None) -> float | None:
    """Where an event falls on the checks' axis (index; halfway between two checks)."""
    if when is None or not times:
        return None
    i = int(np.searchsorted(np.array(times, dtype="datetime64[us]"), np.datetime64(when, "us")))
    return i - 0.5


def _trend_charts(h: dict[str, Any]) -> list[str]:
    from forecastguard.report import svg

    checks = h["checks"]
    if not checks:
        return []
    x = np.arange(len(checks), dtype=float)
    step = max(1, len(checks) // 8)
    ticks = [(float(i), str(checks[i]["window_end"])[5:]) for i in range(0, len(checks), step)]
    colors = [svg.HEALTHY if c["healthy"] else svg.UNHEALTHY for c in checks]
    times = [c["checked_at"] for c in checks]
    events: list[svg.Rule] = []
    for r in h["retrains"]:
        pos = _position(times, r["created_at"])
        if pos is not None and -0.5 <= pos <= len(checks) - 0.5:
            events.append(svg.Rule(pos, f"retrain {r['status']}", svg.MUTED, axis="x"))
    for m in h["models"]:
        pos = _position(times, m["promoted_at"])
        if pos is not None and -0.5 <= pos <= len(checks) - 0.5:
            events.append(
                svg.Rule(pos + 0.1, f"promoted {m['model_version']}", svg.HEALTHY, "x", "2,2")
            )
    last = checks[-1]["summary"].get("thresholds", {})
    x_label = "check (by window end, MM-DD); dot: green healthy, red unhealthy"

    def chart(title: str, key: str, y_label: str, rules: list, scale: float = 1.0, **kw) -> str:
        y = np.array([np.nan if c[key] is None else float(c[key]) * scale for c in checks])
        return svg.line_chart(
            title=title,
            x=x,
            series=[svg.Series(y_label, y, svg.ACTUAL, markers=True, marker_colors=colors)],
            x_label=x_label,
            y_label=y_label,
            x_ticks=ticks,
            rules=[*rules, *events],
            **kw,
        )

    threshold = last.get("rmse_threshold")
    alpha = last.get("fdr_alpha", 0.05)
    return [
        chart(
            "Average RMSE per check (units per day)",
            "avg_rmse",
            "avg RMSE (units per day)",
            [svg.Rule(float(threshold), f"threshold {threshold:g}")] if threshold else [],
        ),
        chart(
            "Average per-product RMSSE per check",
            "avg_rmsse",
            "avg RMSSE",
            [svg.Rule(1.0, "1 = seasonal naive")],
        ),
        chart(
            "Share of tested products whose errors drifted (%)",
            "drifted_share",
            "drifted share (%)",
            [],
            100.0,
        ),
        chart(
            "Global p-value of the drift tests per check (log scale)",
            "p_value",
            "global p-value",
            [svg.Rule(float(alpha), f"α {alpha:g}")],
            log_y=True,
        ),
    ]


def render_history(
    engine: sa.Engine, limit: int = DEFAULT_CHECKS, links: Links | None = None
) -> str:
    """The history page of the last `limit` checks."""
    links = links or Links()
    h = load_history(engine, limit)
    for c in h["checks"]:
        c["href"] = links.check(c["id"], c["summary"])
    drifted = [
        {"product_id": p, "n": n, "href": links.product(p) if links.product else None}
        for p, n in h["drifted"]
    ]
    return render_template(
        "history.html.j2",
        h=h,
        checks=list(reversed(h["checks"])),
        charts=_trend_charts(h),
        drifted=drifted,
        limit=limit,
        num=fmt,
    )


class ProductNotFound(LookupError):
    """No sales, forecasts or checks for this product."""


def render_product(
    engine: sa.Engine, product_id: str, days: int = PRODUCT_DAYS, links: Links | None = None
) -> str:
    """One product's page: actual vs forecast over `days` days, drifted windows marked,
    and its figures in every check (`ProductNotFound` when nothing is known of it)."""
    from forecastguard.report import svg

    links = links or Links()
    hc, hcp = health_checks, health_check_products
    with engine.connect() as conn:
        last = conn.execute(
            sa.select(sa.func.max(sales.c.sale_date)).where(sales.c.product_id == product_id)
        ).scalar()
        checks = [
            dict(r)
            for r in conn.execute(
                sa.select(
                    hc.c.id,
                    hc.c.checked_at,
                    hc.c.window_start,
                    hc.c.window_end,
                    hcp.c.n,
                    hcp.c.rmse,
                    hcp.c.rmsse,
                    hcp.c.bias,
                    hcp.c.drift,
                    hcp.c.drift_kind,
                    hcp.c.ks_qvalue,
                    hcp.c.drift_qvalue,
                )
                .join(hcp, hcp.c.health_check_id == hc.c.id)
                .where(hcp.c.product_id == product_id)
                .order_by(hc.c.checked_at)
            ).mappings()
        ]
        if last is None and not checks:
            raise ProductNotFound(product_id)
        end = last or max(c["window_end"] for c in checks)
        start = end - timedelta(days=days - 1)
        actual = conn.execute(
            sa.select(sales.c.sale_date, sales.c.units_sold).where(
                sales.c.product_id == product_id, sales.c.sale_date.between(start, end)
            )
        ).all()
        forecast = conn.execute(
            sa.select(predictions.c.target_date, predictions.c.predicted_units).where(
                predictions.c.product_id == product_id,
                predictions.c.target_date.between(start, end),
            )
        ).all()
    known = [_as_date(d) for d, _ in actual] + [_as_date(d) for d, _ in forecast]
    start = max(start, min(known)) if known else start
    n = (end - start).days + 1
    a, f = np.full(n, np.nan), np.full(n, np.nan)
    for d, v in actual:
        a[(_as_date(d) - start).days] = v
    for d, v in forecast:
        f[(_as_date(d) - start).days] = v
    spans: list[svg.Span] = []
    labelled_to = -math.inf  # one label per run of overlapping windows
    for c in checks:
        if c["drift"]:
            s0 = (_as_date(c["window_start"]) - start).days
            s1 = (_as_date(c["window_end"]) - start).days
            if s1 >= 0:
                label = "drifted" if s0 > labelled_to else ""
                labelled_to = max(labelled_to, s1) if label else labelled_to
                spans.append(svg.Span(max(s0, 0) - 0.5, s1 + 0.5, label, svg.WINDOW))
    step = max(1, n // 8)
    ticks = [
        (float(i), (start + timedelta(days=i)).strftime("%Y-%m-%d")) for i in range(0, n, step)
    ]
    chart = svg.line_chart(
        title=f"{product_id}: actual vs forecast sales, units per day (windows it drifted in shaded)",
        x=np.arange(n, dtype=float),
        series=[
            svg.Series("actual", a, svg.ACTUAL),
            svg.Series("forecast", f, svg.FORECAST, dash="5,3"),
        ],
        x_label=f"day ({start} to {end})",
        y_label="units per day",
        x_ticks=ticks,
        spans=spans,
        width=1000,
        height=280,
    )
    for c in checks:
        c["href"] = links.check(c["id"], {})
    return render_template(
        "product.html.j2",
        product_id=product_id,
        chart=chart,
        checks=list(reversed(checks)),
        n_drifted=sum(1 for c in checks if c["drift"]),
        history_href=links.history,
        start=start,
        end=end,
    )


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def check_summary(engine: sa.Engine, check_id: str) -> dict[str, Any] | None:
    """The stored summary of one check (None when there is no such check)."""
    with engine.connect() as conn:
        text = conn.execute(
            sa.select(health_checks.c.result_json).where(health_checks.c.id == check_id)
        ).scalar()
    if text is None:
        return None
    try:
        summary = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return summary if isinstance(summary, dict) else {}


def finite(value: Any) -> bool:
    """Whether a value is a finite number."""
    return isinstance(value, int | float) and math.isfinite(value)


def write_static_history(engine: sa.Engine, path: Path, limit: int = DEFAULT_CHECKS) -> Path:
    """The history page as a file, linking each check to its report where the check
    recorded it (opens without a server; no product pages)."""
    from forecastguard.report.check_page import browser_url

    links = Links(check=lambda cid, s: browser_url(s.get("report_uri")), product=None, history=None)
    path.write_text(render_history(engine, limit, links), encoding="utf-8")
    return path


def where_to_see(database_url: str, work: Path, summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, address) lines for the end of the demo: the history page (written to
    `work/history.html`), both checks' reports, and how to serve the pages."""
    from forecastguard.db.engine import make_engine
    from forecastguard.report.check_page import browser_url

    engine = make_engine(database_url)
    try:
        lines = [("history", write_static_history(engine, work / "history.html").as_uri())]
    finally:
        engine.dispose()
    for key, label in (("first_check", "first report"), ("second_check", "second report")):
        uri = (summary.get(key) or {}).get("report_uri")
        lines.append((label, browser_url(uri) or "none (the check wrote no report)"))
    lines.append(
        (
            "served pages",
            f"forecastguard serve --database-url {database_url}  then  http://127.0.0.1:8083/",
        )
    )
    return lines

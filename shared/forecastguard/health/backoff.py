"""Retrain back-off (issue 23): a persisting drift whose retrain was already rejected does
not ask for another retrain on every daily check.

While a drift persists, each check stays UNHEALTHY and reports the products as
persisting (the alarm stays visible), and each asks for a retrain of the same window
kinds. When the retrain asked for this champion produced a challenger that was rejected
(`model_registry.status` 'rejected', linked to the request by `request_id`), another
training on nearly the same data would most likely be rejected again. The next request
is held back until something new happens:

- products drift that the check which asked for the rejected retrain did not flag;
- a product flagged by both has an effect grown materially (`GROWTH` times and by
  `GROWTH_MIN`: its level shift in reference sd, or the log of its spread ratio);
- the RMSE threshold is crossed where it was not;
- or the back-off period is over: `RETRAIN_BACKOFF_DAYS` after the rejection, doubled
  with each rejected challenger of the same champion (7, 14, 28, ... days; 0 turns the
  back-off off).

The decision is the check's `outputs["retrain_backoff"]` (stored with its summary) and
the retrain outcome's `skipped` text says why: "retrain held back: challenger ...
rejected on <date>, next request after <date>".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from forecastguard.db.schema import health_check_products, health_checks, model_registry
from forecastguard.db.schema import retrain_requests as requests_table

# An effect half as large again, and larger by at least GROWTH_MIN (half a reference sd
# of level shift, or 0.5 in the log of the spread ratio), is "more", not the same drift:
# a 30-day window's estimate of a shift wanders by about a third of an sd by itself.
GROWTH = 1.5
GROWTH_MIN = 0.5
MAX_DOUBLINGS = 6  # the period stops doubling at 64 x RETRAIN_BACKOFF_DAYS
RETRAIN_KINDS = frozenset({"drift", "rmse"})  # the reasons the back-off applies to


@dataclass(frozen=True)
class Rejection:
    """The newest rejected challenger of a retrain asked for a champion, and the check
    that asked for it."""

    challenger: str
    rejected_at: datetime
    request_id: str
    check_id: str | None
    window_end: date | None
    rejections: int  # rejected challengers of retrains asked for this champion


def last_rejection(conn: sa.Connection, model_version: str) -> Rejection | None:
    """The newest challenger rejected after a retrain asked for `model_version` (the
    champion the checks judged), or None."""
    r, q = model_registry, requests_table
    rows = conn.execute(
        sa.select(
            r.c.model_version,
            r.c.created_at,
            q.c.request_id,
            q.c.health_check_id,
            q.c.window_end,
        )
        .join(q, q.c.request_id == r.c.request_id)
        .where(q.c.model_version == model_version, r.c.status == "rejected")
        .order_by(r.c.created_at.desc(), r.c.model_version.desc())
    ).all()
    if not rows:
        return None
    newest = rows[0]
    return Rejection(
        challenger=newest.model_version,
        rejected_at=newest.created_at,
        request_id=newest.request_id,
        check_id=newest.health_check_id,
        window_end=newest.window_end,
        rejections=len(rows),
    )


def backoff_days(base_days: int, rejections: int) -> int:
    """The back-off after the `rejections`-th rejected challenger: `base_days` doubled
    for each one before it (7, 14, 28, ...), at most `MAX_DOUBLINGS` times."""
    return base_days * 2 ** min(max(rejections - 1, 0), MAX_DOUBLINGS)


def _asking_check(
    conn: sa.Connection, check_id: str | None
) -> tuple[pd.DataFrame, set[str]] | None:
    """The products flagged by the check that asked for the rejected retrain (product_id,
    and where its product rows are stored drift_kind, bias_shift_sd, spread_ratio; a
    BigQuery installation keeps them there: then the ids its summary lists) and its
    reason kinds; None if that check is not stored."""
    if not check_id:
        return None
    text = conn.execute(
        sa.select(health_checks.c.result_json).where(health_checks.c.id == check_id)
    ).scalar()
    if text is None:
        return None
    summary = json.loads(text)
    p = health_check_products
    rows = conn.execute(
        sa.select(p.c.product_id, p.c.drift_kind, p.c.bias_shift_sd, p.c.spread_ratio).where(
            p.c.health_check_id == check_id, p.c.drift.is_(True)
        )
    ).all()
    flagged = pd.DataFrame(
        [tuple(r) for r in rows],
        columns=["product_id", "drift_kind", "bias_shift_sd", "spread_ratio"],
    )
    if flagged.empty and summary.get("drifted_products"):
        flagged = pd.DataFrame({"product_id": list(summary["drifted_products"])})
    return flagged, set(summary.get("reason_kinds") or ())


def _effect(kind: Any, shift_sd: Any, ratio: Any) -> float:
    """A flagged product's effect: |level shift| in reference sd, or |ln spread ratio|."""
    try:
        value = abs(math.log(float(ratio))) if kind == "scale" else abs(float(shift_sd))
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _grown(now: pd.DataFrame, then: pd.DataFrame) -> list[str]:
    """Products flagged in both whose effect grew by `GROWTH` times and `GROWTH_MIN`."""
    if not {"bias_shift_sd", "spread_ratio"} <= set(then.columns):
        return []
    before = {
        str(r.product_id): _effect(r.drift_kind, r.bias_shift_sd, r.spread_ratio)
        for r in then.itertuples(index=False)
    }
    grown = []
    for r in now.itertuples(index=False):
        old = before.get(str(r.product_id))
        new = _effect(r.drift_kind, r.bias_shift_sd, r.spread_ratio)
        if old is not None and old > 0 and new >= GROWTH * old and new - old >= GROWTH_MIN:
            grown.append(str(r.product_id))
    return grown


def decide(
    conn: sa.Connection,
    summary: dict[str, Any],
    products: pd.DataFrame,
    *,
    base_days: int,
    now: datetime,
) -> dict[str, Any] | None:
    """The back-off decision of an unhealthy check that would ask for a retrain
    (`summary`: its `HealthResult.summary()`; `products`: its per-product rows), or None
    when the back-off does not apply (off, healthy, other reasons, no rejected
    challenger of this champion). Otherwise {"held": bool, "reason": text, ...}."""
    kinds = set(summary.get("reason_kinds") or ())
    model = summary.get("model_version")
    if base_days <= 0 or summary.get("healthy") or not kinds or not kinds <= RETRAIN_KINDS:
        return None
    if not model:
        return None
    rejection = last_rejection(conn, model)
    if rejection is None:
        return None
    days = backoff_days(base_days, rejection.rejections)
    rejected_on = rejection.rejected_at.date()
    next_after = rejected_on + timedelta(days=days)
    outcome: dict[str, Any] = {
        "challenger": rejection.challenger,
        "rejected_on": rejected_on.isoformat(),
        "rejections": rejection.rejections,
        "backoff_days": days,
        "next_request_after": next_after.isoformat(),
        "asked_by_check": rejection.check_id,
        "asked_for_window_end": rejection.window_end.isoformat() if rejection.window_end else None,
    }
    flagged = products[products["drift"].to_numpy(bool)] if "drift" in products else products[:0]
    new_products: list[str] = []
    grown: list[str] = []
    new_kinds: list[str] = []
    asking = _asking_check(conn, rejection.check_id)
    if asking is not None:  # else nothing to compare with: only the period counts
        then, then_kinds = asking
        new_products = sorted(set(flagged["product_id"].astype(str)) - set(then["product_id"]))
        grown = _grown(flagged, then)
        new_kinds = sorted(kinds - then_kinds)
    since = (
        f"since the check of {outcome['asked_for_window_end']}"
        if outcome["asked_for_window_end"]
        else "since the rejected retrain"
    )
    if new_products or grown or new_kinds:
        what = []
        if new_products:
            what.append(f"{len(new_products)} products drift that it did not flag")
        if grown:
            what.append(f"the effect grew by {GROWTH:g}x or more in {len(grown)} products")
        if new_kinds:
            what.append(f"new reasons ({', '.join(new_kinds)})")
        reason = (
            f"retrain asked again: challenger {rejection.challenger} was rejected on "
            f"{rejected_on}, but {since} {'; '.join(what)}"
        )
        held = False
    elif now.date() > next_after:
        reason = (
            f"retrain asked again: the back-off of {days} days after challenger "
            f"{rejection.challenger} was rejected on {rejected_on} is over"
        )
        held = False
    else:
        reason = (
            f"retrain held back: challenger {rejection.challenger} rejected on {rejected_on}, "
            f"next request after {next_after} (back-off {days} days; nothing new {since}: "
            "no product drifts that it did not flag, no effect grew by "
            f"{GROWTH:g}x)"
        )
        held = True
    outcome.update(
        held=held,
        reason=reason,
        new_products=new_products[:20],
        grown_products=grown[:20],
        new_reason_kinds=new_kinds,
    )
    return outcome

"""Drift episodes (issue 23): a shift the chain did not fix stays visible until a model
fixes it.

The check judges the served model against its own last healthy state. A product that a
check flags opens an episode for the model that served it (`health_drift_episodes`):
`since` is the first day of the window that first flagged it. Later checks of that model
judge the product against its errors from before `since` (or against the model's holdout
errors when too few are left) — never against the shifted days, which would make the
shift the new normal and the drift "healthy" two weeks later. The episode is reported
(`drift_checks`, `drift_since`) and lasts until a check tests the product and passes
it, or another model serves.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa

from forecastguard.db.schema import health_drift_episodes as episodes_table

EPISODE_COLUMNS = ("product_id", "since", "checks", "first_as_of")


def load_episodes(engine: sa.Engine | sa.Connection, model_version: str | None) -> pd.DataFrame:
    """The open drift episodes of `model_version`: product_id, since, checks (how many
    checks flagged it in a row), first_as_of. Empty without a model version."""
    if not model_version:
        return pd.DataFrame(columns=list(EPISODE_COLUMNS))
    t = episodes_table
    query = sa.select(t.c.product_id, t.c.since, t.c.checks, t.c.first_as_of).where(
        t.c.model_version == model_version
    )
    if isinstance(engine, sa.Connection):
        rows = engine.execute(query).all()
    else:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(EPISODE_COLUMNS))


def record_episodes(
    conn: sa.Connection,
    *,
    model_version: str | None,
    as_of: date,
    window_start: date,
    products: pd.DataFrame,
) -> None:
    """Update the episodes of `model_version` with a check's per-product results
    (`HealthResult.products`: product_id, drift, drift_kind, drift_pvalue).

    A flagged product opens an episode (since = the window's first day) or continues
    its own (one check more, if this check is newer than its latest); a product tested
    and not flagged closes its episode; an untested product leaves it as it is. A check
    of an older date than an episode's latest (a re-run) changes nothing of it.
    """
    if not model_version or products.empty:
        return
    t = episodes_table
    existing = {
        r.product_id: r
        for r in conn.execute(
            sa.select(t.c.product_id, t.c.since, t.c.first_as_of, t.c.last_as_of, t.c.checks).where(
                t.c.model_version == model_version
            )
        )
    }
    flagged = products["drift"].to_numpy(bool)
    tested = products["drift_pvalue"].notna().to_numpy()
    ids = products["product_id"].astype(str).to_numpy()
    kinds = products["drift_kind"].to_numpy(object)
    closed = [
        p for p in ids[tested & ~flagged] if p in existing and existing[p].last_as_of <= as_of
    ]
    writes = []
    for pid, kind in zip(ids[flagged], kinds[flagged], strict=True):
        old = existing.get(pid)
        if old is None:
            writes.append((pid, window_start, as_of, as_of, 1, kind))
        elif old.last_as_of < as_of:
            writes.append((pid, old.since, old.first_as_of, as_of, old.checks + 1, kind))
    gone = closed + [w[0] for w in writes if w[0] in existing]
    for start in range(0, len(gone), 500):
        conn.execute(
            t.delete().where(
                (t.c.model_version == model_version) & t.c.product_id.in_(gone[start : start + 500])
            )
        )
    if writes:
        conn.execute(
            t.insert(),
            [
                {
                    "model_version": model_version,
                    "product_id": pid,
                    "since": since,
                    "first_as_of": first,
                    "last_as_of": last,
                    "checks": checks,
                    "kind": None if kind is None or kind != kind else str(kind),
                }
                for pid, since, first, last, checks, kind in writes
            ],
        )

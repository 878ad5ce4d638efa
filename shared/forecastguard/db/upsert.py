"""Insert-or-update on the primary key, batched, for SQLite and MySQL/MariaDB."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

BATCH_ROWS = 5000


def upsert_rows(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Insert `rows` into `table`, updating the non-key columns where the key exists.

    Runs inside the caller's transaction; returns the number of rows sent.
    """
    if not rows:
        return 0
    dialect = conn.dialect.name
    keys = [c.name for c in table.primary_key.columns]
    columns = list(rows[0].keys())
    updates = [c for c in columns if c not in keys]
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect in {"mysql", "mariadb"}:
        from sqlalchemy.dialects.mysql import insert
    else:  # pragma: no cover - forecastguard supports SQLite and MySQL only
        raise NotImplementedError(f"upsert is not implemented for {dialect}")
    stmt = insert(table)
    if dialect == "sqlite":
        if updates:
            stmt = stmt.on_conflict_do_update(
                index_elements=keys, set_={c: stmt.excluded[c] for c in updates}
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    else:
        target = updates or keys[:1]
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in target})
    for start in range(0, len(rows), batch_rows):
        conn.execute(stmt, list(rows[start : start + batch_rows]))
    return len(rows)

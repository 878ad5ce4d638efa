"""Store a health check: one `health_checks` row and its products, in one transaction."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import sqlalchemy as sa

from forecastguard.db.schema import health_check_products, health_checks
from forecastguard.health.check import HealthResult
from forecastguard.health.episodes import record_episodes

_PRODUCT_COLUMNS = (
    "product_id",
    "n",
    "rmse",
    "mae",
    "bias",
    "rmsse",
    "ks_pvalue",
    "ks_qvalue",
    "drift_pvalue",
    "drift_qvalue",
    "bias_shift",
    "bias_shift_sd",
    "spread_ratio",
)
_TEXT_COLUMNS = ("reference", "drift_kind", "drift_test")  # None stays NULL


def store_result(
    engine: sa.Engine,
    result: HealthResult,
    event_id: str | None = None,
    *,
    products: bool = True,
) -> None:
    """Insert the check and its per-product rows atomically (all or nothing).

    `products=False` stores the summary only (a BigQuery installation keeps the
    per-product rows in BigQuery, issue 24).

    `event_id` is the Pub/Sub event that asked for the check (unique: a redelivery that
    raced the first delivery gets an IntegrityError and nothing is stored twice).

    `result_json` keeps the summary without the product list (MySQL's TEXT holds 64 KB);
    the products are the `health_check_products` rows.
    """
    if not result.check_id or result.checked_at is None:
        raise ValueError("store_result: the result needs check_id and checked_at")
    summary = result.summary()
    row = {
        "id": result.check_id,
        "checked_at": result.checked_at.replace(tzinfo=None),
        "as_of": result.as_of,
        "window_start": result.window_start,
        "window_end": result.window_end,
        "healthy": result.healthy,
        "avg_rmse": summary["avg_rmse"],
        "p_value": summary["p_value"],
        "drift_detected": result.drift_detected,
        "drifted_share": summary["drifted_share"],
        "n_products": result.n_products,
        "reasons": json.dumps(result.reasons),
        "model_versions": json.dumps(result.model_versions),
        "duration_s": float(result.duration_s),
        "result_json": json.dumps(summary, default=str),
        "event_id": event_id,
    }
    frame = result.products if products else result.products.iloc[:0]
    columns = {c: _column(frame[c].to_numpy()) for c in _PRODUCT_COLUMNS}
    columns["drift"] = frame["drift"].to_numpy(bool).tolist()
    for name in _TEXT_COLUMNS:
        columns[name] = [None if v is None or v != v else str(v) for v in frame[name].tolist()]
    names = ["health_check_id", *columns]
    values = [[result.check_id] * len(frame), *columns.values()]
    with engine.begin() as conn:
        conn.execute(health_checks.insert(), [row])
        # Issue 23: the drift episodes of the served model (a shift stays flagged).
        record_episodes(
            conn,
            model_version=result.model_version,
            as_of=result.as_of,
            window_start=result.window_start,
            products=result.products,
        )
        if len(frame) and products:
            table = conn.dialect.identifier_preparer.format_table(health_check_products)
            insert = f"INSERT INTO {table} ({', '.join(names)}) VALUES "
            if conn.dialect.driver == "pymysql":
                _insert_literal_rows(conn, insert, values)
            else:
                # The driver's executemany directly: SQLAlchemy's per-row parameter
                # handling costs more than the insert itself for 10,000 plain rows.
                mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                rows = list(zip(*values, strict=True))
                conn.exec_driver_sql(f"{insert}({', '.join([mark] * len(names))})", rows)


_LITERAL_ROWS = 2000  # rows an INSERT statement (about 0.5 MB: under max_allowed_packet)


def _insert_literal_rows(conn: sa.Connection, insert: str, columns: list[list]) -> None:
    """PyMySQL: the rows as literal multi-row INSERTs, each value written as PyMySQL's
    `escape` writes it (a string quoted and escaped for the connection's mode, a float's
    repr as a DOUBLE, NULL for None) but a column at a time: its executemany escapes
    value by value through its type dispatch, 0.3 s of the check's CPU for 10,000
    product rows.

    The next statement's text is written while the server inserts the last one's rows
    (one sender thread on the transaction's connection, the statements in order, one at
    a time): at 10,000 rows the server took about 0.15 s for the five statements and the
    texts about 0.08 s of the check's CPU, which came one after the other."""
    escape = conn.connection.dbapi_connection.escape  # a str quoted for the connection's mode
    # On the DBAPI cursor of the transaction's connection, without parameters: PyMySQL
    # then formats nothing into the statement (SQLAlchemy would pass {}, and a "%" in a
    # product id would be read as a placeholder); its errors raised as SQLAlchemy's.
    error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.cursor()

    def send(statement: str) -> None:
        try:
            cursor.execute(statement, None)
        except error as exc:
            raise sa.exc.DBAPIError.instance(f"{insert}...", None, exc, error) from exc

    sender = ThreadPoolExecutor(1, thread_name_prefix="health-store")
    sent: Future[None] | None = None
    try:
        for start in range(0, len(columns[0]), _LITERAL_ROWS):
            # A chunk at a time: 10,000 rows' literals are 170,000 strings (12 MB).
            texts = [_literals(v[start : start + _LITERAL_ROWS], escape) for v in columns]
            rows = ",".join([f"({','.join(row)})" for row in zip(*texts, strict=True)])
            del texts
            if sent is not None:
                sent.result()  # the last statement's error, before the next is sent
            sent = sender.submit(send, insert + rows)
        if sent is not None:
            sent.result()
    finally:
        sender.shutdown(wait=True)  # nothing runs on the connection after this returns
        cursor.close()


def _double(text: str) -> str:
    """A finite float's repr (the shortest text that reads back the same double) as a
    DOUBLE literal, as PyMySQL writes it."""
    return text if "e" in text else text + "e0"


_NULL_FLOATS = {"None": "NULL", "nan": "NULL", "inf": "NULL", "-inf": "NULL"}


def _literals(values: list, escape: Callable[[str], str]) -> list[str]:
    """SQL literals of plain Python values (None, bool, int, float, str)."""
    if values and all(v is None or type(v) is float for v in values):
        # A column of floats: the list's repr writes each float's repr in C (0.13 ->
        # 0.08 s for the 11 float columns of 10,000 products).
        texts = repr(values)[1:-1].split(", ")
        return [_NULL_FLOATS.get(t) or _double(t) for t in texts]
    out = []
    quoted: dict[str, str] = {}  # the check's id is in every row
    for value in values:
        if value is None:
            out.append("NULL")
        elif isinstance(value, str):
            text = quoted.get(value)
            if text is None:
                text = quoted[value] = escape(value)
            out.append(text)
        elif isinstance(value, bool | np.bool_):
            out.append("1" if value else "0")
        elif isinstance(value, int | np.integer):
            out.append(str(int(value)))
        elif isinstance(value, float | np.floating):
            out.append(_double(repr(float(value))) if math.isfinite(value) else "NULL")
        else:
            raise TypeError(f"no SQL literal for {type(value).__name__}")
    return out


def _column(values: np.ndarray) -> list:
    if values.dtype.kind == "f":
        return [v if math.isfinite(v) else None for v in values.tolist()]
    return values.tolist()

"""Sales in: the long frame every stage works on, from the database or the pasta CSV.

The long frame has one row a product and day: `product_id` (str), `date`
(datetime64), `units_sold` (float) and `on_promotion` (0/1 int). It is what
`forecastguard.synth.generate_sales` produces, so synthetic data, the database and the
real pasta data all enter the pipeline the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.db.schema import promotions, sales

COLUMNS = ("product_id", "date", "units_sold", "on_promotion")


class DataError(ValueError):
    """The input data cannot be used; the message says why."""


def validate_long(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the long frame's columns and types; return a normalised copy.

    `on_promotion` is optional (0 when absent). Raises `DataError` naming the problem.
    """
    missing = [c for c in ("product_id", "date", "units_sold") if c not in frame.columns]
    if missing:
        raise DataError(f"sales frame lacks column(s) {missing}; it has {list(frame.columns)}")
    if frame.empty:
        raise DataError("sales frame is empty")
    out = pd.DataFrame(
        {
            "product_id": frame["product_id"].astype(str),
            "date": pd.to_datetime(frame["date"], errors="coerce").dt.normalize(),
            "units_sold": pd.to_numeric(frame["units_sold"], errors="coerce").astype(float),
            "on_promotion": (
                pd.to_numeric(frame["on_promotion"], errors="coerce").fillna(0).gt(0).astype(int)
                if "on_promotion" in frame.columns
                else 0
            ),
        }
    )
    bad_dates = int(out["date"].isna().sum())
    if bad_dates:
        raise DataError(f"sales frame has {bad_dates} row(s) whose date cannot be parsed")
    return out.reset_index(drop=True)


def load_sales(
    conn: sa.Connection | sa.Engine,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    products: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read `sales` joined with `promotions` into the long frame (optionally a date range,
    optionally only `products`: one partition's, issue 26)."""
    on_promo = sa.case((promotions.c.promo_date.is_not(None), 1), else_=0).label("on_promotion")
    query = (
        sa.select(
            sales.c.product_id,
            sales.c.sale_date.label("date"),
            sales.c.units_sold,
            on_promo,
        )
        .select_from(
            sales.outerjoin(
                promotions,
                sa.and_(
                    promotions.c.product_id == sales.c.product_id,
                    promotions.c.promo_date == sales.c.sale_date,
                ),
            )
        )
        .order_by(sales.c.product_id, sales.c.sale_date)
    )
    if start is not None:
        query = query.where(sales.c.sale_date >= start)
    if end is not None:
        query = query.where(sales.c.sale_date <= end)
    rows: list[Any] = []
    if products is None:
        rows = _rows(conn, query)
    else:  # in chunks: an IN list stays within every driver's parameter limit
        wanted = sorted({str(p) for p in products})
        for i in range(0, len(wanted), 1000):
            rows += _rows(conn, query.where(sales.c.product_id.in_(wanted[i : i + 1000])))
    if not rows:
        raise DataError("the sales table has no rows in the requested range")
    return validate_long(pd.DataFrame(rows, columns=list(COLUMNS)))


def _rows(conn: sa.Connection | sa.Engine, query: Any) -> list[Any]:
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return list(c.execute(query).all())
    return list(conn.execute(query).all())


def load_product_ids(conn: sa.Connection | sa.Engine) -> list[str]:
    """Every product id with sales (sorted): what partitioning needs, without the sales."""
    query = sa.select(sales.c.product_id).distinct()
    return sorted(str(r[0]) for r in _rows(conn, query))


def load_promotions(conn: sa.Connection | sa.Engine) -> pd.DataFrame:
    """All promoted days, `product_id`, `date` (future ones included: forecast mode uses them)."""
    query = sa.select(promotions.c.product_id, promotions.c.promo_date.label("date"))
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            rows = c.execute(query).all()
    else:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["product_id", "date"])
    frame["product_id"] = frame["product_id"].astype(str)
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def read_pasta_csv(path: str | Path, *, products: int | None = None) -> pd.DataFrame:
    """Read the pasta data's wide CSV (DATE, QTY_B<b>_<n>, PROMO_B<b>_<n>) into the long frame.

    Product ids are `B<b>_<n>`. Days the store was closed are absent from the file and so
    absent from the frame (the data-quality stage finds and fills them). `products`
    keeps only the first N products (for quick runs).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pasta CSV not found: {path}")
    wide = pd.read_csv(path)
    if "DATE" not in wide.columns:
        raise DataError(f"{path}: no DATE column (columns start {list(wide.columns[:5])})")
    qty_cols = [c for c in wide.columns if c.startswith("QTY_")]
    if not qty_cols:
        raise DataError(f"{path}: no QTY_ columns")
    if products is not None:
        qty_cols = qty_cols[:products]
    ids = [c.removeprefix("QTY_") for c in qty_cols]
    dates = pd.to_datetime(wide["DATE"], format="%Y-%m-%d")
    qty = wide[qty_cols].to_numpy(dtype=float)
    promo_cols = [f"PROMO_{i}" for i in ids]
    promo = np.column_stack(
        [wide[c].to_numpy() if c in wide.columns else np.zeros(len(wide)) for c in promo_cols]
    )
    n_days, n_products = qty.shape
    return pd.DataFrame(
        {
            "product_id": np.repeat(np.array(ids, dtype=object), n_days),
            "date": np.tile(dates.to_numpy(), n_products),
            "units_sold": qty.T.reshape(-1),
            "on_promotion": (promo.T.reshape(-1) > 0).astype(int),
        }
    )

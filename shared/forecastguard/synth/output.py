"""Writing synthetic sales and forecasts: to the database (one transaction) or to CSV."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from forecastguard.db import schema
from forecastguard.db.upsert import upsert_rows

_IN_CHUNK = 500  # products per DELETE ... IN (...)


def _days(values: pd.Series) -> list:
    return list(pd.to_datetime(values).dt.date)


def write_database(
    engine: sa.Engine,
    sales: pd.DataFrame,
    predictions: pd.DataFrame | None = None,
    *,
    created_at: datetime | None = None,
) -> dict[str, int]:
    """Upsert `sales`, their promotion days and `predictions` in one transaction.

    The frame is the truth for the products and days it covers: their earlier
    promotion days are cleared first. Returns the number of rows written per table.
    """
    created = (created_at or datetime.now(UTC)).replace(tzinfo=None)
    products = [str(p) for p in sales["product_id"]]
    days = _days(sales["date"])
    sales_rows = [
        {"product_id": p, "sale_date": d, "units_sold": float(u)}
        for p, d, u in zip(products, days, sales["units_sold"], strict=True)
    ]
    promo_rows = [
        {"product_id": p, "promo_date": d}
        for p, d, on in zip(products, days, sales["on_promotion"], strict=True)
        if on
    ]
    prediction_rows = []
    if predictions is not None:
        prediction_rows = [
            {
                "product_id": str(p),
                "target_date": d,
                "predicted_units": float(y),
                "model_version": str(v),
                "created_at": created,
            }
            for p, d, y, v in zip(
                predictions["product_id"],
                _days(predictions["target_date"]),
                predictions["predicted_units"],
                predictions["model_version"],
                strict=True,
            )
        ]
    written = {"sales": 0, "promotions": 0, "predictions": 0}
    if not sales_rows:
        return written
    unique_products = sorted(set(products))
    with engine.begin() as conn:
        written["sales"] = upsert_rows(conn, schema.sales, sales_rows)
        for i in range(0, len(unique_products), _IN_CHUNK):
            conn.execute(
                schema.promotions.delete().where(
                    schema.promotions.c.product_id.in_(unique_products[i : i + _IN_CHUNK]),
                    schema.promotions.c.promo_date.between(min(days), max(days)),
                )
            )
        written["promotions"] = upsert_rows(conn, schema.promotions, promo_rows)
        written["predictions"] = upsert_rows(conn, schema.predictions, prediction_rows)
    return written


def write_sales_csv(sales: pd.DataFrame, path: str | Path) -> int:
    """Long CSV `product_id,date,units,on_promotion` (whole units, promotion as 0/1)."""
    frame = pd.DataFrame(
        {
            "product_id": sales["product_id"],
            "date": pd.to_datetime(sales["date"]).dt.strftime("%Y-%m-%d"),
            "units": sales["units_sold"].round().astype("int64"),
            "on_promotion": sales["on_promotion"].astype("int64"),
        }
    )
    frame.to_csv(path, index=False)
    return len(frame)


def write_predictions_csv(predictions: pd.DataFrame, path: str | Path) -> int:
    """CSV `product_id,target_date,predicted_units,model_version`."""
    frame = predictions.assign(
        target_date=pd.to_datetime(predictions["target_date"]).dt.strftime("%Y-%m-%d")
    )
    frame[["product_id", "target_date", "predicted_units", "model_version"]].to_csv(
        path, index=False
    )
    return len(frame)

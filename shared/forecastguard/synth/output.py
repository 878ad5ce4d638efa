"""Writing synthetic sales and forecasts: to the database (one transaction) or to CSV."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from forecastguard.db import schema
from forecastguard.db.upsert import upsert_rows
from forecastguard.sales_io import write_sales


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
    written = {"sales": 0, "promotions": 0, "predictions": 0}
    if sales.empty:
        return written
    created = (created_at or datetime.now(UTC)).replace(tzinfo=None)
    products = sales["product_id"].astype(str)
    days = _days(sales["date"])
    rows = pd.DataFrame(
        {"product_id": products, "sale_date": days, "units_sold": sales["units_sold"].astype(float)}
    )
    flags = pd.DataFrame(
        {"product_id": products, "promo_date": days, "on_promotion": sales["on_promotion"]}
    )
    prediction_rows = []
    if predictions is not None:
        prediction_rows = pd.DataFrame(
            {
                "product_id": predictions["product_id"].astype(str),
                "target_date": _days(predictions["target_date"]),
                "predicted_units": predictions["predicted_units"].astype(float),
                "model_version": predictions["model_version"].astype(str),
                "created_at": created,
            }
        ).to_dict("records")
    with engine.begin() as conn:
        written["promotions"] = write_sales(conn, rows, flags)
        written["sales"] = len(rows)
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

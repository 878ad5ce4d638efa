"""Reading sales: the long frame's checks, the pasta wide CSV, the database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.db.schema import promotions, sales
from trainer.config import TrainConfig
from trainer.data.load import DataError, load_sales, read_pasta_csv, validate_long
from trainer.data.quality import check_quality

# The real data lives in ../shared beside the checkout and is read in place.
REPO = Path(__file__).resolve().parents[3]
PASTA = REPO.parent / "shared" / "data" / "pasta_sales_uci611" / "hierarchical_sales_data.csv"


def test_missing_column_is_named() -> None:
    with pytest.raises(DataError, match=r"lacks column\(s\) \['units_sold'\]"):
        validate_long(pd.DataFrame({"product_id": ["a"], "date": ["2024-01-01"]}))


def test_unparseable_dates_are_counted() -> None:
    frame = pd.DataFrame(
        {"product_id": ["a", "a"], "date": ["2024-01-01", "yesterday"], "units_sold": [1, 2]}
    )
    with pytest.raises(DataError, match="1 row"):
        validate_long(frame)


def test_promotion_defaults_to_zero() -> None:
    out = validate_long(
        pd.DataFrame({"product_id": [1], "date": ["2024-01-01"], "units_sold": [3]})
    )
    assert out["on_promotion"].tolist() == [0]
    assert out["product_id"].tolist() == ["1"]


def test_read_pasta_wide_csv(tmp_path: Path) -> None:
    csv = tmp_path / "wide.csv"
    csv.write_text(
        "DATE,QTY_B1_1,QTY_B1_2,PROMO_B1_1,PROMO_B1_2\n2014-01-02,7,3,0,1\n2014-01-04,5,0,1,0\n"
    )
    long = read_pasta_csv(csv)
    assert len(long) == 4
    b12 = long[long["product_id"] == "B1_2"].reset_index(drop=True)
    assert b12["units_sold"].tolist() == [3.0, 0.0]
    assert b12["on_promotion"].tolist() == [1, 0]
    assert b12["date"].tolist() == [pd.Timestamp("2014-01-02"), pd.Timestamp("2014-01-04")]


def test_read_pasta_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_pasta_csv(tmp_path / "nope.csv")


@pytest.mark.realdata
@pytest.mark.skipif(not PASTA.is_file(), reason=f"pasta data absent at {PASTA}")
def test_read_real_pasta_data() -> None:
    long = read_pasta_csv(PASTA)
    assert long["product_id"].nunique() == 118
    assert long["date"].nunique() == 1798
    assert long["units_sold"].ge(0).all()
    # The store's closed days are absent from the file: quality finds and fills them.
    report = check_quality(long, TrainConfig()).report
    assert len(report.closure_dates) == 27
    assert "2018-12-25" in report.closure_dates
    assert report.totals()["closure_days"] == 27 * 118
    # Issue 18: daily, every closure a public holiday in Italy, nothing missing or failed.
    assert report.frequency["kind"] == "daily" and report.frequency["agreeing"] == 118
    assert len(report.closure_kinds["public holiday"]) == 27
    assert report.missing_dates == () and report.failures == ()
    assert report.export_kind == "dense"


def test_load_sales_joins_promotions(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(sales),
            [
                {"product_id": "A", "sale_date": dt.date(2024, 1, 1), "units_sold": 2.0},
                {"product_id": "A", "sale_date": dt.date(2024, 1, 2), "units_sold": 4.0},
                {"product_id": "B", "sale_date": dt.date(2024, 1, 1), "units_sold": 1.0},
            ],
        )
        conn.execute(
            sa.insert(promotions), [{"product_id": "A", "promo_date": dt.date(2024, 1, 2)}]
        )
    frame = load_sales(engine)
    engine.dispose()
    assert frame[["product_id", "units_sold", "on_promotion"]].values.tolist() == [
        ["A", 2.0, 0],
        ["A", 4.0, 1],
        ["B", 1.0, 0],
    ]
    assert frame["date"].dtype.kind == "M"


def test_load_sales_empty_table_is_an_error(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    with pytest.raises(DataError, match="no rows"):
        load_sales(engine)
    engine.dispose()

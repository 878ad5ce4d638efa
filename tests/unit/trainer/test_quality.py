"""Data quality: every finding is counted per product and handled by its rule."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from trainer.config import TrainConfig
from trainer.data.quality import check_quality

CFG = TrainConfig(min_observations=5, max_gap_days=3)


def frame(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["product_id", "date", "units_sold"])


def series(pid: str, start: str, values: list[float]) -> list[tuple[str, str, float]]:
    dates = pd.date_range(start, periods=len(values), freq="D").strftime("%Y-%m-%d")
    return [(pid, d, v) for d, v in zip(dates, values, strict=True)]


def test_clean_data_has_no_findings(sales: pd.DataFrame) -> None:
    res = check_quality(sales, CFG)
    totals = res.report.totals()
    assert {k: v for k, v in totals.items() if k not in ("rows", "observed_days", "products")} == {
        "duplicates_identical": 0,
        "duplicates_conflicting": 0,
        "negative_sales": 0,
        "missing_values": 0,
        "gap_days": 0,
        "inferred_zero_days": 0,
        "closure_days": 0,
        "missing_days": 0,
        "large_gaps": 0,
        "sparse_products": 0,
        "dropped_products": 0,
    }
    assert len(res.clean) == len(sales)


def test_identical_duplicates_kept_once_conflicting_summed() -> None:
    rows = series("A", "2024-01-01", [1, 2, 3, 4, 5, 6])
    rows += [("A", "2024-01-02", 2.0), ("A", "2024-01-03", 10.0)]
    res = check_quality(frame(rows), CFG)
    per = res.report.per_product.loc["A"]
    assert per["duplicates_identical"] == 1
    assert per["duplicates_conflicting"] == 1
    units = res.clean.set_index("date")["units_sold"]
    assert units[pd.Timestamp("2024-01-02")] == 2.0
    assert units[pd.Timestamp("2024-01-03")] == 13.0


def test_negative_sales_clipped_and_counted() -> None:
    res = check_quality(frame(series("A", "2024-01-01", [1, -3, 2, -1, 5, 6])), CFG)
    assert res.report.per_product.loc["A", "negative_sales"] == 2
    assert res.clean["units_sold"].min() == 0.0


def test_missing_values_interpolated() -> None:
    res = check_quality(frame(series("A", "2024-01-01", [2, np.nan, 4, 5, 6, 7])), CFG)
    assert res.report.per_product.loc["A", "missing_values"] == 1
    assert res.clean["units_sold"].tolist()[:3] == [2.0, 3.0, 4.0]


def test_gap_days_filled_with_zero_and_large_gaps_reported() -> None:
    a = series("A", "2024-01-01", [5] * 20)
    # B misses 2 days (a small gap) and 5 days (a large gap, > max_gap_days=3).
    b = [
        r
        for i, r in enumerate(series("B", "2024-01-01", [4] * 20))
        if i not in (3, 4, 10, 11, 12, 13, 14)
    ]
    res = check_quality(frame(a + b), CFG)
    per = res.report.per_product.loc["B"]
    assert per["gap_days"] == 7
    assert per["large_gaps"] == 1
    assert per["longest_gap"] == 5
    assert per["closure_days"] == 0
    clean_b = res.clean[res.clean["product_id"] == "B"]
    assert len(clean_b) == 20
    assert (clean_b["units_sold"] == 0).sum() == 7


def test_closure_days_are_days_no_product_has() -> None:
    a = series("A", "2024-01-01", [5] * 10)
    b = series("B", "2024-01-01", [3] * 10)
    closed = "2024-01-05"
    rows = [r for r in a + b if r[1] != closed]
    res = check_quality(frame(rows), CFG)
    assert res.report.closure_dates == (closed,)
    assert res.report.per_product["closure_days"].tolist() == [1, 1]
    assert res.report.per_product["gap_days"].tolist() == [0, 0]


def test_sparse_products_flagged_and_empty_ones_dropped() -> None:
    rows = series("A", "2024-01-01", [5] * 10) + series("S", "2024-01-07", [1, 2, 3])
    rows += [("E", "2024-01-02", np.nan), ("E", "2024-01-03", np.nan)]
    res = check_quality(frame(rows), CFG)
    assert res.report.sparse_products == ["S"]
    assert res.report.dropped_products == ("E",)
    assert "E" not in set(res.clean["product_id"])


def test_discontinued_product_is_not_extended_but_recent_tail_is() -> None:
    a = series("A", "2024-01-01", [5] * 30)
    stopped = series("D", "2024-01-01", [2] * 10)  # 20 days before the end: discontinued
    tail = series("T", "2024-01-01", [2] * 28)  # 2 days before the end: dropped zero days
    res = check_quality(frame(a + stopped + tail), CFG)
    clean = res.clean.groupby("product_id")["date"].max()
    assert clean["D"] == pd.Timestamp("2024-01-10")
    assert clean["T"] == pd.Timestamp("2024-01-30")
    assert res.report.per_product.loc["T", "gap_days"] == 2


def test_report_is_json_and_names_products_and_rules() -> None:
    res = check_quality(frame(series("A", "2024-01-01", [1, -1, 2, 3, 4, 5])), CFG)
    doc = json.loads(json.dumps(res.report.to_dict()))
    assert doc["totals"]["negative_sales"] == 1
    assert doc["products_with_findings"]["A"]["negative_sales"] == 1
    assert "clipped" in doc["rules"]["negative_sales"]


def test_no_usable_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="no product"):
        check_quality(frame([("A", "2024-01-01", np.nan)]), CFG)

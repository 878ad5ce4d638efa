"""Issue 26 item 4: exports that omit zero-sale days. Plausible absent days are zeros
(filled, not counted by the `mostly_filled` guard); genuinely missing data still blocks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.unit.trainer2.test_report_render import _data
from trainer.config import TrainConfig
from trainer.data.load import read_pasta_csv
from trainer.data.quality import (
    EXPORT_DENSE,
    EXPORT_MIXED,
    EXPORT_SALES_ONLY,
    check_quality,
    plausible_zero_runs,
)
from trainer.report.render import render_markdown

PASTA = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "data"
    / "pasta_sales_uci611"
    / "hierarchical_sales_data.csv"
)
CFG = TrainConfig(min_observations=30, max_gap_days=7)


def intermittent(days: int = 400, products: int = 8, rate: float = 0.35, seed: int = 1):
    """A dense export of intermittent products: many recorded zero days."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-01", periods=days, freq="D")
    sold = rng.random((products, days)) < rate
    units = np.where(sold, rng.integers(1, 6, (products, days)), 0).astype(float)
    return pd.DataFrame(
        {
            "product_id": np.repeat([f"P{i}" for i in range(products)], days),
            "date": np.tile(dates, products),
            "units_sold": units.ravel(),
        }
    )


def test_plausible_zero_runs_follow_the_products_rate() -> None:
    present = np.ones(730, dtype=bool)
    present[100:104] = False  # 4 days
    present[300:330] = False  # 30 days
    # A product that sells on 40 % of days: a 4-day run is ordinary, 30 days is not.
    many = plausible_zero_runs(present, sale_days=292, days=730)
    assert many[100:104].all() and not many[300:330].any()
    # A daily seller (sells on 95 % of days): neither run is a plausible zero run.
    daily = plausible_zero_runs(present, sale_days=694, days=730)
    assert not daily.any()
    assert not plausible_zero_runs(np.ones(5, dtype=bool), 5, 5).any()


def test_sales_only_export_of_intermittent_products_is_not_mostly_filled() -> None:
    dense = intermittent()
    sales_only = dense[dense["units_sold"] > 0]
    res = check_quality(sales_only, CFG)
    rep = res.report
    assert rep.export_kind == EXPORT_SALES_ONLY
    t, shares = rep.totals(), rep.shares()
    # ~65 % of the product-days were absent: before, `mostly_filled` blocked this data.
    assert (t["gap_days"] + t["closure_days"]) / rep.grid_days > 0.5
    assert shares["inferred_zeros"] > 0.5 and shares["filled"] < 0.05
    assert rep.failures == ()
    # The zeros put back are the recorded zeros of the dense export.
    both = res.clean.merge(dense, on=["product_id", "date"], suffixes=("", "_dense"))
    assert len(both) == len(res.clean)
    assert (both["units_sold"] == both["units_sold_dense"]).all()
    # Reported: quality.json and the report's data-quality table.
    doc = rep.to_dict()
    assert doc["export_kind"] == EXPORT_SALES_ONLY
    assert doc["shares"]["inferred_zeros"] == pytest.approx(shares["inferred_zeros"], abs=1e-4)
    rows = {r["rule"]: r for r in doc["table"]}
    assert rows["export"]["found"] == EXPORT_SALES_ONLY
    assert rows["inferred_zero_days"]["found"] == t["inferred_zero_days"] > 0
    assert (
        f"{t['inferred_zero_days']} of {t['gap_days']} gap days read as zero"
        in (rows["export"]["done"])
    )
    md = render_markdown(dataclasses.replace(_data(champion=False), quality=doc))
    assert "Export: sales-only (zero days omitted)." in md
    assert f"{t['inferred_zero_days']} of {t['gap_days']} gap days read as zero" in md


def test_dense_export_is_unchanged() -> None:
    rep = check_quality(intermittent(), CFG).report
    assert rep.export_kind == EXPORT_DENSE
    assert rep.totals()["inferred_zero_days"] == 0 and rep.shares()["inferred_zeros"] == 0.0


def test_mixed_export_with_zero_rows_and_long_gaps_still_blocks() -> None:
    # The export writes zeros, yet 60 % of the days are absent: they are not zeros.
    dense = intermittent(rate=0.6)
    rng = np.random.default_rng(2)
    mixed = dense[rng.random(len(dense)) > 0.6]
    rep = check_quality(mixed, CFG).report
    assert rep.export_kind == EXPORT_MIXED
    assert rep.totals()["inferred_zero_days"] == 0
    assert any(f.startswith("mostly_filled") for f in rep.failures)


def test_lost_feed_of_daily_sellers_still_blocks() -> None:
    # Sales-only (no zero rows), but each daily seller lost 3 of every 5 blocks of 30
    # days (90-day runs; phases staggered, so the store stays open every day):
    # implausible zero runs for a daily seller, counted as filled.
    days = pd.date_range("2024-01-01", periods=600, freq="D")
    block = np.arange(len(days)) // 30
    rng = np.random.default_rng(3)
    frames = []
    for i in range(6):
        keep = (block + i) % 5 >= 3
        keep[:5] = keep[-5:] = True  # every product spans the whole calendar
        frames.append(
            pd.DataFrame(
                {
                    "product_id": f"P{i}",
                    "date": days[keep],
                    "units_sold": rng.poisson(20, int(keep.sum())) + 1.0,
                }
            )
        )
    rep = check_quality(pd.concat(frames, ignore_index=True), CFG).report
    assert rep.export_kind == EXPORT_SALES_ONLY and not rep.missing_dates
    assert rep.totals()["inferred_zero_days"] == 0
    failure = next(f for f in rep.failures if f.startswith("mostly_filled"))
    assert "export sales-only (zero days omitted)" in failure


def test_store_wide_absent_days_are_not_inferred_zeros() -> None:
    dense = intermittent()
    sales_only = dense[dense["units_sold"] > 0]
    outage = pd.date_range("2024-06-01", periods=40, freq="D")  # no row at all
    rep = check_quality(sales_only[~sales_only["date"].isin(outage)], CFG).report
    assert rep.export_kind == EXPORT_SALES_ONLY
    assert len(rep.missing_dates) == 40  # missing data: not filled, never a zero
    closed = set(rep.closure_dates)  # isolated all-product absent days: filled, counted
    assert closed and rep.shares()["filled"] >= len(closed) / rep.calendar_days * 0.9


def test_sales_only_tail_keeps_an_intermittent_product_listed() -> None:
    dense = intermittent(products=4, rate=0.3)
    # P0's last sale 12 days before the end (> max_gap_days); P1 a daily seller that
    # stopped 12 days before the end (discontinued).
    dense = dense[~((dense["product_id"] == "P0") & (dense["date"] > "2025-01-22"))]
    dates = pd.date_range("2024-01-01", "2025-01-22", freq="D")
    p1 = pd.DataFrame({"product_id": "P1", "date": dates, "units_sold": 30.0})
    sales = pd.concat([dense[dense["product_id"] != "P1"], p1], ignore_index=True)
    clean = check_quality(sales[sales["units_sold"] > 0], CFG).clean
    last = clean.groupby("product_id")["date"].max()
    end = sales["date"].max()
    assert last["P0"] == end and last["P1"] == pd.Timestamp("2025-01-22")


@pytest.mark.skipif(not PASTA.is_file(), reason=f"pasta data absent at {PASTA}")
def test_real_pasta_with_zero_rows_dropped() -> None:
    sales = read_pasta_csv(PASTA)
    zero_share = sales.groupby("product_id")["units_sold"].apply(lambda s: (s == 0).mean())
    # The 21 most intermittent products (over 40 % zero days), as a sales-only export.
    products = zero_share.index[zero_share > 0.4]
    dense = sales[sales["product_id"].isin(products)]
    sales_only = dense[dense["units_sold"] != 0]
    cfg = TrainConfig()
    rep = check_quality(sales_only, cfg).report
    t = rep.totals()
    assert len(products) == 21 and rep.export_kind == EXPORT_SALES_ONLY
    assert (t["gap_days"] + t["closure_days"]) / rep.grid_days > 0.5  # blocked before
    assert rep.failures == ()
    assert rep.shares()["filled"] < 0.05
    # Genuinely missing: the same products with their zero rows, 60 % of rows lost.
    rng = np.random.default_rng(0)
    lossy = dense[rng.random(len(dense)) > 0.6]
    blocked = check_quality(lossy, cfg).report
    assert blocked.export_kind == EXPORT_MIXED
    assert any(f.startswith("mostly_filled") for f in blocked.failures)

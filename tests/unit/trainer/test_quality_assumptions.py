"""Issue 18: every assumption about the sales is detected and reported, nothing
fabricated. Fixtures of the shapes that broke the trainer: weekly rows, a 6-of-7
absence pattern, an export without zero days, long all-product gaps, negative weeks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.config import TrainConfig
from trainer.data.quality import FrequencyError, check_quality, classify_absent_days
from trainer.judge.promotion import Scores, decide

CFG = TrainConfig(min_observations=30, max_gap_days=7)


def panel(dates: pd.DatetimeIndex, products: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "product_id": np.repeat([f"P{i}" for i in range(products)], len(dates)),
            "date": np.tile(dates, products),
            "units_sold": rng.poisson(20, size=len(dates) * products).astype(float),
        }
    )


def test_weekly_rows_are_refused_with_the_detected_frequency() -> None:
    weekly = panel(pd.date_range("2023-01-06", periods=104, freq="7D"), products=5)
    weekly.loc[weekly.index[::17], "units_sold"] = -3.0  # negative weeks, as in the report
    with pytest.raises(FrequencyError) as err:
        check_quality(weekly, CFG)
    msg = str(err.value)
    assert "these sales are weekly: one row per product every 7 days" in msg
    assert "forecastguard works on daily sales" in msg
    assert err.value.frequency.kind == "weekly"


def test_six_of_seven_absence_is_missing_data_not_closures() -> None:
    days = pd.date_range("2024-01-01", periods=26 * 7, freq="D")
    kept = days[days.day_of_week == 4]  # every product present on Fridays only
    with pytest.raises(FrequencyError, match="weekly"):
        check_quality(panel(kept), CFG)
    # The absent days, classified on their own: missing data, no closure invented.
    full = pd.date_range(kept.min(), kept.max(), freq="D")
    closures, missing, reasons = classify_absent_days(
        full, full.difference(kept), holiday_country="IT"
    )
    assert sum(len(v) for v in closures.values()) == 0
    assert len(missing) == len(full) - len(kept)
    assert reasons and "consecutive days" in reasons[0]


def test_a_weekday_absent_every_week_is_missing_unless_on_the_store_calendar() -> None:
    days = pd.date_range("2024-01-01", periods=20 * 7, freq="D")
    open_days = days[days.day_of_week != 6]  # no product ever has a Sunday row
    sales = panel(open_days)
    report = check_quality(sales, CFG).report
    assert (
        len(report.missing_dates) == 19 and not report.closure_dates
    )  # the last day is a Saturday
    assert any(
        "Sundays absent for every product in 19 of 19 weeks" in r for r in report.missing_reasons
    )
    clean = check_quality(sales, CFG).clean
    assert not clean["date"].dt.day_of_week.eq(6).any()  # no zero fabricated on Sundays
    # With the store's calendar saying it closes on Sundays they are closures (0 sales).
    res = check_quality(sales, TrainConfig(min_observations=30, closure_dates=("sunday",)))
    assert len(res.report.closure_kinds["store calendar"]) == 19 and not res.report.missing_dates
    assert res.clean.loc[res.clean["date"].dt.day_of_week.eq(6), "units_sold"].eq(0).all()


def test_export_without_zero_days_is_filled_and_says_so() -> None:
    rng = np.random.default_rng(3)
    days = pd.date_range("2024-01-01", periods=200, freq="D")
    frames = []
    for i in range(8):
        sold = days[rng.random(len(days)) < 0.7]  # only days with sales are stored
        frames.append(
            pd.DataFrame(
                {"product_id": f"P{i}", "date": sold, "units_sold": rng.integers(1, 9, len(sold))}
            )
        )
    res = check_quality(pd.concat(frames, ignore_index=True), CFG)
    rep = res.report
    assert rep.frequency["kind"] == "daily"
    assert rep.export_kind == "sales-only (zero days omitted)"
    assert rep.totals()["gap_days"] > 0 and not rep.missing_dates
    assert len(res.clean) == sum(200 - (f["date"].min() - days[0]).days for f in frames)
    filled = res.clean.merge(pd.concat(frames), how="left", on=["product_id", "date"])
    assert filled.loc[filled["units_sold_y"].isna(), "units_sold_x"].eq(0).all()
    assert rep.failures == ()
    row = {r["rule"]: r for r in rep.table()}["gap_days"]
    assert row["found"] == rep.totals()["gap_days"] and "dropped zero-sales day" in row["why"]


def test_long_all_product_gap_is_reported_and_not_filled() -> None:
    days = pd.date_range("2024-01-01", periods=240, freq="D")
    outage = days[100:140]  # 40 days lost for every product
    res = check_quality(panel(days.difference(outage)), CFG)
    rep = res.report
    assert rep.missing_dates == tuple(d.strftime("%Y-%m-%d") for d in outage)
    assert not rep.closure_dates and rep.totals()["gap_days"] == 0
    assert not res.clean["date"].isin(outage).any()  # nothing fabricated
    assert "1 run(s) of more than 2 consecutive days (longest 40" in rep.missing_reasons[0]
    row = {r["rule"]: r for r in rep.table()}["missing_days"]
    assert row["found"] == 40 and row["done"] == "not filled (left out)"
    assert rep.to_dict()["missing_dates"][0] == "2024-04-10"


def test_isolated_holiday_and_isolated_day_are_closures() -> None:
    days = pd.date_range("2023-12-01", periods=60, freq="D")
    closed = pd.DatetimeIndex(["2023-12-25", "2023-12-26", "2024-01-17"])
    rep = check_quality(panel(days.difference(closed)), CFG).report
    assert rep.closure_kinds["public holiday"] == ["2023-12-25", "2023-12-26"]
    assert rep.closure_kinds["isolated day"] == ["2024-01-17"]
    assert rep.totals()["closure_days"] == 3 * 4 and not rep.missing_dates


def test_negative_sales_counted_with_the_units_returned() -> None:
    sales = panel(pd.date_range("2024-01-01", periods=60, freq="D"))
    sales.loc[[3, 70], "units_sold"] = [-2.0, -5.0]
    res = check_quality(sales, CFG)
    assert res.report.totals()["negative_sales"] == 2
    assert res.report.negative_units == 7.0
    assert res.clean["units_sold"].min() >= 0
    row = {r["rule"]: r for r in res.report.table()}["negative_sales"]
    assert "7 units returned" in row["done"]


def test_mostly_sparse_and_mostly_filled_fail_and_block_promotion() -> None:
    rng = np.random.default_rng(1)
    days = pd.date_range("2024-01-01", periods=200, freq="D")
    frames = [panel(days, products=2)]
    for i in range(6):  # six products recorded on a quarter of the days
        sold = days[rng.random(len(days)) < 0.25]
        frames.append(pd.DataFrame({"product_id": f"S{i}", "date": sold, "units_sold": 1.0}))
    sales = pd.concat(frames, ignore_index=True)
    cfg = TrainConfig(min_observations=100)
    # Without a zero row this is a sales-only export: its absent days are zeros (issue 26).
    assert check_quality(sales, cfg).report.failures == ()
    # The export writes zeros (one zero row), so the absent days are missing data.
    sales.loc[sales.index[0], "units_sold"] = 0.0
    rep = check_quality(sales, cfg).report
    assert rep.export_kind == "mixed (zero rows recorded and days absent)"
    names = [f.split(":")[0] for f in rep.failures]
    assert names == ["mostly_filled", "mostly_sparse"]
    assert "6 of 8 products" in rep.failures[1] and "upstream" in rep.failures[1]
    # A challenger far better than everything is still not promoted.
    good, bad = Scores(rmsse=0.1, disparity=1.1), Scores(rmsse=0.9, disparity=1.1)
    for champion in (None, bad):
        decision = decide(good, champion, bad, data_quality_failures=rep.failures)
        assert not decision.promote and "mostly_sparse" in decision.reason


def test_capped_augmentation_is_a_failure() -> None:
    rep = check_quality(panel(pd.date_range("2024-01-01", periods=60)), CFG).report
    assert rep.failures == ()
    capped = rep.with_augmentation(
        {"capped": True, "wanted_share": 0.75, "max_share": 0.2, "share": 0.2}
    )
    assert capped.failures == (
        "mostly_synthetic: augmentation wanted 75% synthetic training windows; capped at 20%",
    )
    assert capped.to_dict()["augmentation"]["share"] == 0.2
    # Capped, but most of training would not have been synthetic: reported, not failed.
    some = rep.with_augmentation({"capped": True, "wanted_share": 0.36, "max_share": 0.2})
    assert some.failures == ()

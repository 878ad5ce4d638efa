"""Sampling frequency: daily passes (also with dropped zero days), weekly/monthly named."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastguard.frequency import (
    DAILY,
    MONTHLY,
    WEEKLY,
    classify_intervals,
    detect_frequency,
    product_frequencies,
)


def long(dates: pd.DatetimeIndex, products: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_id": np.repeat([f"P{i}" for i in range(products)], len(dates)),
            "date": np.tile(dates, products),
        }
    )


def test_daily_rows_are_daily() -> None:
    freq = detect_frequency(long(pd.date_range("2024-01-01", periods=60, freq="D")))
    assert freq.kind == DAILY and freq.is_daily and freq.step_days == 1
    assert freq.agreeing == freq.products == 3


def test_weekly_rows_are_named_weekly_with_the_advice() -> None:
    freq = detect_frequency(long(pd.date_range("2024-01-05", periods=40, freq="7D")))
    assert freq.kind == WEEKLY and not freq.is_daily and freq.step_days == 7
    msg = freq.message()
    assert "these sales are weekly: one row per product every 7 days" in msg
    assert "forecastguard works on daily sales" in msg and "aggregate to daily rows" in msg


def test_monthly_rows_are_named_monthly() -> None:
    freq = detect_frequency(long(pd.date_range("2020-01-31", periods=30, freq="ME")))
    assert freq.kind == MONTHLY and not freq.is_daily
    assert "these sales are monthly" in freq.message()


def test_dropped_zero_days_keep_intermittent_products_daily() -> None:
    # A product sold on 30 % of days (zero days not stored): intervals spread out, 1 is
    # still the most common one.
    rng = np.random.default_rng(5)
    days = pd.date_range("2024-01-01", periods=365, freq="D")
    rows = [
        pd.DataFrame({"product_id": f"P{i}", "date": days[rng.random(365) < p]})
        for i, p in enumerate((0.3, 0.5, 0.9))
    ]
    freq = detect_frequency(pd.concat(rows))
    assert freq.kind == DAILY and freq.per_product == {"P0": DAILY, "P1": DAILY, "P2": DAILY}


def test_irregular_and_mixed_shapes() -> None:
    assert classify_intervals(np.array([3, 3, 3, 3]))[0] == "every 3 days"
    assert classify_intervals(np.array([7, 7, 7, 6, 8, 6, 8]))[0] == "every 7 days"
    assert classify_intervals(np.array([]))[0] == "unknown"
    # Most products weekly, one daily: the data set is weekly.
    weekly = long(pd.date_range("2024-01-05", periods=30, freq="7D"), products=4)
    daily = pd.DataFrame({"product_id": "D", "date": pd.date_range("2024-01-01", periods=200)})
    freq = detect_frequency(pd.concat([weekly, daily]))
    assert freq.kind == WEEKLY and freq.agreeing == 4 and freq.products == 5


def test_single_rows_are_unknown_not_refused() -> None:
    freq = detect_frequency(pd.DataFrame({"product_id": ["A", "B"], "date": ["2024-01-01"] * 2}))
    assert freq.kind == "unknown" and freq.is_daily


def test_product_frequencies_agree_with_each_products_own_intervals() -> None:
    # Daily with gaps, weekly, monthly, every n days, one date, repeated rows; given
    # shuffled and in (product, day) order (which skips the sort).
    rng = np.random.default_rng(7)
    shapes = [
        np.flatnonzero(rng.random(120) < 0.3),
        np.arange(3, 120, 7),
        np.cumsum([29, 31, 30, 28]),
        np.arange(0, 120, 5),
        np.array([17]),
        np.repeat([4, 9, 30], 2),
    ]
    codes = np.concatenate([np.full(len(d), i) for i, d in enumerate(shapes)])
    days = np.concatenate(shapes)
    expected = [classify_intervals(np.diff(np.unique(d))) for d in shapes]
    order = rng.permutation(len(codes))
    for c, d in ((codes[order], days[order]), (codes, days)):
        kinds, steps = product_frequencies(c, d, len(shapes))
        assert [(k, s or None) for k, s in zip(kinds, steps, strict=True)] == [
            (k, s) if k != "unknown" else ("unknown", None) for k, s in expected
        ]
    assert kinds[:3].tolist() == [DAILY, WEEKLY, MONTHLY]

"""Sampling frequency of sales: how many days lie between a product's observed dates.

forecastguard works on daily sales (one row per product and day). A file of weekly or
monthly totals looks like daily data with most days missing, and filling those days
with zeros makes a model of zeros. This module detects the frequency so `load-sales`,
the trainer and the health check can say what they were given.

Per product, the intervals between consecutive distinct observed dates are counted and
the most common one (the smallest on a tie) is the product's step. Daily data with
dropped zero-sale days still has step 1: the gaps between sales days of an
intermittent product are spread out and 1 is the most common one. Weekly totals have
step 7 with (nearly) every interval a multiple of 7; monthly totals steps of 28-31 days.
The data set's frequency is the one most products have. Pure numpy/pandas.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

DAILY = "daily"
WEEKLY = "weekly"
MONTHLY = "monthly"
UNKNOWN = "unknown"  # too few observations to tell
# Share of a product's intervals that must fit its step's pattern (multiples of 7 for
# weekly, 28-31 days for monthly); otherwise the product is "irregular".
PATTERN_SHARE = 0.9


@dataclass(frozen=True)
class Frequency:
    """The detected frequency of a sales data set, and of each product."""

    kind: str  # daily, weekly, monthly, every N days, unknown
    step_days: int | None  # the data set's most common step (None: unknown)
    products: int  # products with at least two observed dates
    agreeing: int  # of those, products whose own frequency is `kind`
    per_product: dict[str, str] = field(default_factory=dict)  # product -> its frequency

    @property
    def is_daily(self) -> bool:
        """True when the data are daily (or too short to tell, which is not refused here)."""
        return self.kind in (DAILY, UNKNOWN)

    def message(self) -> str:
        """What was detected and, when it is not daily, what to do instead."""
        if self.kind == UNKNOWN:
            return "sampling frequency unknown: no product has two observed dates"
        share = f"{self.agreeing} of {self.products} products"
        if self.kind == DAILY:
            return f"these sales are daily: one row per product and day ({share})"
        return (
            f"these sales are {self.kind}: one row per product every {self.step_days} days "
            f"({share}); forecastguard works on daily sales — aggregate to daily rows "
            "(load the daily sales the totals were summed from, one row per product and "
            "day, zero-sale days included or omitted) or forecast them with a tool for "
            f"{self.kind} data. Filling the days in between with zeros would make a model "
            "of zeros"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the per-product map)."""
        return {
            "kind": self.kind,
            "step_days": self.step_days,
            "products": self.products,
            "agreeing": self.agreeing,
            "daily": self.is_daily,
        }


def classify_intervals(intervals: np.ndarray) -> tuple[str, int | None]:
    """(frequency, step) of one product's intervals in days between observed dates."""
    intervals = np.asarray(intervals, dtype=np.int64)
    intervals = intervals[intervals > 0]
    if intervals.size == 0:
        return UNKNOWN, None
    values, counts = np.unique(intervals, return_counts=True)
    step = int(values[np.argmax(counts)])  # np.unique sorts: the smallest wins a tie
    weekly = float(np.mean(intervals % 7 == 0))
    monthly = float(np.mean((intervals >= 28) & (intervals <= 31)))
    kind = _kind_of(step, weekly, monthly)
    return kind, step


def _kind_of(step: int, weekly_share: float, monthly_share: float) -> str:
    """The frequency a product's most common step and its pattern shares stand for."""
    if step == 1:
        return DAILY
    if step % 7 == 0 and step <= 14 and weekly_share >= PATTERN_SHARE:
        return WEEKLY if step == 7 else f"every {step} days"
    if 28 <= step <= 31 and monthly_share >= PATTERN_SHARE:
        return MONTHLY
    return f"every {step} days"


def detect_frequency(
    sales: pd.DataFrame, *, product: str = "product_id", date: str = "date"
) -> Frequency:
    """Detect the sampling frequency of a long frame (`product`, `date` columns).

    Rows with the same product and date count once; the time of day is ignored.
    """
    if len(sales) == 0:
        return Frequency(UNKNOWN, None, 0, 0, {})
    days = pd.to_datetime(sales[date]).to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    codes, names = pd.factorize(sales[product])
    n = len(names)
    kinds, step = product_frequencies(codes, days.astype(np.int64) - days.min().astype(np.int64), n)
    per = {str(names[i]): str(kinds[i]) for i in range(n)}
    tally = Counter(kinds.tolist())
    tally.pop(UNKNOWN, None)
    if not tally:
        return Frequency(UNKNOWN, None, 0, 0, per)
    values = np.array(sorted(tally))
    counts = np.array([tally[v] for v in values])
    best = np.lexsort((values != DAILY, -counts))[0]  # most products first, daily on a tie
    kind = str(values[best])
    agreeing = int(counts[best])
    return Frequency(kind, int(np.median(step[kinds == kind])), int(counts.sum()), agreeing, per)


def product_frequencies(
    codes: np.ndarray, days: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per product (codes 0..n-1): its frequency (object array: daily, weekly, ...,
    unknown) and step, its most common interval in days (the smallest on a tie; 0:
    unknown), from one row per observation (`days`: whole days >= 0, in any order;
    repeated (product, day) rows count once). Vectorised over products."""
    key = np.asarray(codes, np.int64) * (1 << 32) + np.asarray(days, np.int64)
    key, _ = _sorted_unique(key)  # by product, then date; one entry per (product, date)
    code, day = key >> 32, key & 0xFFFFFFFF
    same = code[1:] == code[:-1]
    gap_code, gap = code[1:][same], np.diff(day)[same]
    kinds = np.full(n, UNKNOWN, dtype=object)
    step = np.zeros(n, dtype=np.int64)
    if gap.size:
        pair, g_count = _sorted_unique(gap_code * (1 << 32) + gap)
        g_code, g_gap = pair >> 32, pair & 0xFFFFFFFF
        order = np.lexsort((g_gap, -g_count, g_code))
        first = order[np.r_[True, g_code[order][1:] != g_code[order][:-1]]]
        has = np.zeros(n, dtype=bool)
        has[g_code[first]] = True
        step[g_code[first]] = g_gap[first]
        total = np.bincount(gap_code, minlength=n)
        weekly_share = np.bincount(gap_code, weights=gap % 7 == 0, minlength=n) / np.maximum(
            total, 1
        )
        monthly_share = np.bincount(
            gap_code, weights=(gap >= 28) & (gap <= 31), minlength=n
        ) / np.maximum(total, 1)
        kinds[has & (step == 1)] = DAILY
        for i in np.flatnonzero(has & (step != 1)):
            kinds[i] = _kind_of(int(step[i]), weekly_share[i], monthly_share[i])
    return kinds, step


def _sorted_unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique values, counts) by sorting: numpy's hash-based unique is slower on int64 keys.
    Values already strictly increasing (a window read in (product, day) order) are not
    sorted again."""
    if (values[1:] > values[:-1]).all():
        return values, np.ones(values.size, np.int64)
    values = np.sort(values)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return values[starts], np.diff(np.r_[starts, values.size])

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
    if step == 1:
        return DAILY, 1
    if step % 7 == 0 and step <= 14 and np.mean(intervals % 7 == 0) >= PATTERN_SHARE:
        return (WEEKLY, 7) if step == 7 else (f"every {step} days", step)
    if 28 <= step <= 31 and np.mean((intervals >= 28) & (intervals <= 31)) >= PATTERN_SHARE:
        return MONTHLY, step
    return f"every {step} days", step


def detect_frequency(
    sales: pd.DataFrame, *, product: str = "product_id", date: str = "date"
) -> Frequency:
    """Detect the sampling frequency of a long frame (`product`, `date` columns).

    Rows with the same product and date count once; the time of day is ignored.
    """
    days = pd.to_datetime(sales[date]).dt.normalize().to_numpy(dtype="datetime64[D]")
    frame = pd.DataFrame({"p": sales[product].astype(str).to_numpy(), "d": days.astype(np.int64)})
    frame = frame.drop_duplicates().sort_values(["p", "d"])
    first = (frame["p"] != frame["p"].shift()).to_numpy()
    frame["gap"] = np.where(first, 0, frame["d"].diff().fillna(0).to_numpy())
    per: dict[str, str] = {}
    steps: dict[str, int] = {}
    for pid, gaps in frame.groupby("p", sort=True)["gap"]:
        kind, step = classify_intervals(gaps.to_numpy()[1:])
        per[str(pid)] = kind
        if step is not None:
            steps[str(pid)] = step
    known = [k for k in per.values() if k != UNKNOWN]
    if not known:
        return Frequency(UNKNOWN, None, 0, 0, per)
    kinds, counts = np.unique(np.array(known), return_counts=True)
    order = np.lexsort((kinds != DAILY, -counts))  # most products first, daily on a tie
    kind = str(kinds[order[0]])
    agreeing = int(counts[order[0]])
    step = int(np.median([steps[p] for p, k in per.items() if k == kind]))
    return Frequency(kind, step, len(known), agreeing, per)

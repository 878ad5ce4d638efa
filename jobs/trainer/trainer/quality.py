"""Data quality: find every problem in the sales, handle it by a stated rule, report it.

Findings, counted per product, and the rule that handles each (nothing is silent):

- duplicates: rows with the same product and day. Identical rows (a double load) are
  kept once; rows that differ are summed (partial records of the same day).
- negative sales (returns exceeding sales): clipped to 0.
- missing values (a recorded day with no quantity): linearly interpolated from the
  neighbouring days of the same product (a day with an unknown count is not a zero).
- gap days (dates absent between a product's first record and the data's last day —
  dropped zero-sales days): filled with 0 sales, no promotion. A product whose records
  stop more than `max_gap_days` before the end is taken as discontinued there.
- closure days (dates absent for every product: the store was closed): filled with 0.
- large gaps (a run of more than `max_gap_days` absent days): counted and reported; the
  days are filled like the others, and the report names the product.
- sparse products (fewer than `min_observations` recorded days): flagged; augmentation
  adds synthetic training series for them.
- empty products (no usable value at all): dropped.

The output is a complete daily grid per product, from its first record to the data's
last day (or its own last record when discontinued).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger
from trainer.config import TrainConfig
from trainer.data import DataError, validate_long

log = get_logger(__name__)

RULES: dict[str, str] = {
    "duplicates_identical": "identical rows for one product and day kept once",
    "duplicates_conflicting": "differing rows for one product and day summed",
    "negative_sales": "clipped to 0",
    "missing_values": "interpolated linearly between the product's neighbouring days",
    "gap_days": "absent days inside a product's range filled with 0 sales",
    "closure_days": "days absent for every product (store closed) filled with 0 sales",
    "large_gaps": "runs of absent days longer than max_gap_days: filled, and reported",
    "sparse": "fewer than min_observations recorded days: flagged for augmentation",
    "empty": "products with no usable value dropped",
}

COUNT_COLUMNS = (
    "rows",
    "observed_days",
    "duplicates_identical",
    "duplicates_conflicting",
    "negative_sales",
    "missing_values",
    "gap_days",
    "closure_days",
    "large_gaps",
    "longest_gap",
)


@dataclass(frozen=True)
class QualityReport:
    """Per-product counts of each finding plus the totals and the rules applied."""

    per_product: pd.DataFrame  # index product_id; COUNT_COLUMNS + sparse (bool)
    dropped_products: tuple[str, ...] = ()
    closure_dates: tuple[str, ...] = ()
    rules: dict[str, str] = field(default_factory=lambda: dict(RULES))

    @property
    def sparse_products(self) -> list[str]:
        """Products flagged sparse."""
        return [str(p) for p in self.per_product.index[self.per_product["sparse"]]]

    def totals(self) -> dict[str, int]:
        """Each finding summed over products."""
        out = {c: int(self.per_product[c].sum()) for c in COUNT_COLUMNS if c != "longest_gap"}
        out["sparse_products"] = int(self.per_product["sparse"].sum())
        out["dropped_products"] = len(self.dropped_products)
        out["products"] = len(self.per_product)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable report (totals, rules, per-product rows with a finding)."""
        flagged = self.per_product[
            self.per_product[list(COUNT_COLUMNS[2:])].gt(0).any(axis=1) | self.per_product["sparse"]
        ]
        return {
            "totals": self.totals(),
            "rules": self.rules,
            "closure_dates": list(self.closure_dates),
            "dropped_products": list(self.dropped_products),
            "products_with_findings": {
                str(pid): {k: (bool(v) if k == "sparse" else int(v)) for k, v in row.items()}
                for pid, row in flagged.iterrows()
            },
        }


@dataclass(frozen=True)
class QualityResult:
    """The cleaned long frame and the report of what was done to it."""

    clean: pd.DataFrame
    report: QualityReport


def _gap_runs(observed: np.ndarray) -> np.ndarray:
    """Lengths of the runs of False in a boolean day mask."""
    padded = np.concatenate(([True], observed, [True])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == -1)
    ends = np.flatnonzero(edges == 1)
    return ends - starts


def check_quality(sales: pd.DataFrame, cfg: TrainConfig) -> QualityResult:
    """Report every data-quality finding per product and return the cleaned daily grid."""
    frame = validate_long(sales)
    rows = frame.groupby("product_id").size()

    # Duplicates: identical rows kept once, differing ones summed.
    key = ["product_id", "date"]
    identical = frame.duplicated(keep="first")
    dup_identical = frame[identical].groupby("product_id").size()
    frame = frame[~identical]
    conflicting = frame.duplicated(key, keep="first")
    dup_conflicting = frame[conflicting].groupby("product_id").size()
    if conflicting.any():
        frame = frame.groupby(key, as_index=False, sort=False).agg(
            units_sold=("units_sold", lambda s: s.sum(min_count=1)),
            on_promotion=("on_promotion", "max"),
        )

    negatives = frame[frame["units_sold"] < 0].groupby("product_id").size()
    frame.loc[frame["units_sold"] < 0, "units_sold"] = 0.0
    missing = frame[frame["units_sold"].isna()].groupby("product_id").size()

    all_dates = pd.DatetimeIndex(frame["date"].unique()).sort_values()
    end = all_dates.max()
    n_products = frame["product_id"].nunique()
    if n_products > 1:
        full = pd.date_range(all_dates.min(), all_dates.max(), freq="D")
        closure_dates = full.difference(all_dates)
    else:
        closure_dates = pd.DatetimeIndex([])

    pieces: list[pd.DataFrame] = []
    stats: dict[str, dict[str, int]] = {}
    dropped: list[str] = []
    for pid, g in frame.sort_values(key).groupby("product_id", sort=True):
        if g["units_sold"].notna().sum() == 0:
            dropped.append(str(pid))
            continue
        # A product whose last record is at most max_gap_days before the data's last day
        # is still sold: its missing tail days are dropped zero-sales days. Otherwise it is
        # taken as discontinued and its grid ends at its last record.
        last = g["date"].iloc[-1]
        if (end - last).days <= cfg.max_gap_days:
            last = end
        grid = pd.date_range(g["date"].iloc[0], last, freq="D")
        g = g.set_index("date").reindex(grid)
        observed = g["product_id"].notna().to_numpy()
        absent = ~observed
        closure = absent & grid.isin(closure_dates)
        runs = _gap_runs(observed)
        units = g["units_sold"].copy()
        # Interpolate only the recorded-but-missing values; absent days are zeros.
        units[absent] = 0.0
        units = units.interpolate(method="linear", limit_direction="both")
        stats[str(pid)] = {
            "observed_days": int(observed.sum()),
            "gap_days": int((absent & ~closure).sum()),
            "closure_days": int(closure.sum()),
            "large_gaps": int((runs > cfg.max_gap_days).sum()),
            "longest_gap": int(runs.max()) if runs.size else 0,
        }
        pieces.append(
            pd.DataFrame(
                {
                    "product_id": str(pid),
                    "date": grid,
                    "units_sold": units.to_numpy(dtype=float),
                    "on_promotion": g["on_promotion"].fillna(0).astype(int).to_numpy(),
                }
            )
        )
    if not pieces:
        raise DataError("data quality: no product has any usable sales value")

    per = pd.DataFrame.from_dict(stats, orient="index")
    per.index.name = "product_id"
    for name, counts in (
        ("rows", rows),
        ("duplicates_identical", dup_identical),
        ("duplicates_conflicting", dup_conflicting),
        ("negative_sales", negatives),
        ("missing_values", missing),
    ):
        per[name] = counts.reindex(per.index).fillna(0).astype(int)
    per["sparse"] = per["observed_days"] < cfg.min_observations
    per = per[[*COUNT_COLUMNS, "sparse"]]
    report = QualityReport(
        per_product=per,
        dropped_products=tuple(dropped),
        closure_dates=tuple(d.strftime("%Y-%m-%d") for d in closure_dates),
    )
    log.info("data quality checked", extra=report.totals())
    clean = pd.concat(pieces, ignore_index=True)
    return QualityResult(clean=clean, report=report)

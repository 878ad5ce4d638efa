"""Data quality: find every problem in the sales, handle it by a stated rule, report it.

The trainer assumes daily sales, one row per product and day. Every way the data can
break that assumption is detected and handled by a rule named in the report
(`QualityReport.table()`), and the rules that make a model untrustworthy are listed in
`QualityReport.failures`, which blocks its promotion. Nothing is silent:

- frequency: the sampling interval between observed dates (`forecastguard.frequency`).
  Anything but daily (weekly or monthly totals, one row every N days) is refused with
  `FrequencyError` naming what was detected: filling the days between weekly rows with
  zeros would make a model of zeros.
- duplicates: rows with the same product and day. Identical rows (a double load) are
  kept once; rows that differ are summed (partial records of the same day).
- negative sales (net returns, loaded with `load-sales --negative keep`): counted, with
  the units returned, and clipped to 0 for training (demand is not negative).
- missing values (a recorded day with no quantity): linearly interpolated from the
  neighbouring days of the same product (a day with an unknown count is not a zero).
- days absent for every product are classified one by one:
  - closures, filled with 0 sales: public holidays of `holiday_country` (the
    `holidays` package), days of the user's store calendar (`closure_dates`: dates or
    weekday names), and isolated days (runs of at most `MAX_CLOSURE_RUN` days);
  - missing data, NOT filled (left out, so no training window or metric touches them):
    runs longer than `MAX_CLOSURE_RUN` days (an outage, a lost export), and a weekday
    absent for every product in at least `REGULAR_SHARE` of the weeks (a regular
    pattern; a store closed every Sunday says so in `closure_dates`).
- gap days (a product absent while other products have rows: a dropped zero-sales day
  of an export that stores only sales): filled with 0. A product whose records stop
  more than `max_gap_days` before the end is taken as discontinued there.
- large gaps (a product's run of more than `max_gap_days` absent days): filled like the
  other gap days, counted and reported with the product.
- sparse products (fewer than `min_observations` recorded days): flagged; augmentation
  adds synthetic training series for them, at most `max_synthetic_share` of training.
- empty products (no usable value at all): dropped.

The export kind says which case the gaps were, and it is acted on:

- "dense": no gap days (every product has a row on every day of its grid);
- "sales-only (zero days omitted)": gap days, and no row anywhere has 0 units — the
  export writes only days with sales (many retail exports do). A gap day is then a zero,
  not a guess, when it is *plausible* for the product: the store was open (other
  products have rows that day: an all-product absent day is a closure or missing data,
  above) and the product's run of absent days is not too long for its own rate of sale
  days `q` — the expected number of runs at least that long among its `n` days,
  `n q (1 - q)^L`, is at least `ZERO_RUN_ALPHA`. Plausible gap days are *inferred
  zeros*: filled with 0 like every gap day, but not counted as filled by the
  `mostly_filled` guard, and counted with the recorded days for `sparse` (the product's
  history is known, mostly zeros). An implausible run (a daily seller absent for
  weeks: a lost feed) is filled and counted as filled, as before. The tail is read the
  same way: a product absent for a plausible run up to the data's last day still sells
  (its grid runs to the end), even when the run is longer than `max_gap_days`.
- "mixed (zero rows recorded and days absent)": the export writes zeros, so its absent
  days are not zero sales: filled, and counted as filled.

Failures (each blocks promotion): `mostly_filled` (more than `MAX_FILLED_SHARE` of the
product-days were filled, not observed or inferred zeros), `mostly_missing` (more than
`MAX_MISSING_SHARE` of the calendar is missing data), `mostly_sparse` (more than
`MAX_SPARSE_SHARE` of the products are sparse: something upstream is wrong) and
`mostly_synthetic` (augmentation wanted more than `MAX_WANTED_SYNTHETIC_SHARE` of the
training windows to be synthetic; it made at most `max_synthetic_share`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import holidays
import numpy as np
import pandas as pd

from forecastguard.frequency import Frequency, detect_frequency
from forecastguard.logs import get_logger
from trainer.config import TrainConfig
from trainer.data.load import DataError, validate_long

log = get_logger(__name__)

MAX_CLOSURE_RUN = 2  # consecutive all-product absent days a closure can last (25-26 Dec)
REGULAR_SHARE = 0.5  # a weekday absent for every product in this share of weeks: a pattern
MIN_REGULAR_WEEKS = 4  # ... and in at least this many weeks
MAX_FILLED_SHARE = 0.5
MAX_MISSING_SHARE = 0.5
MAX_SPARSE_SHARE = 0.5
MAX_WANTED_SYNTHETIC_SHARE = 0.5  # augmentation wanting more than this: mostly synthetic
# A sales-only export's run of L absent days is a plausible zero run for a product with
# sale-day rate q over n days when n q (1 - q)^L (expected runs that long) >= this. On the
# real pasta data with its zero rows dropped, 97 % of the true zero days pass (the rest
# are long runs of recorded zeros: stock-outs, seasons); a daily seller (q = 0.95) absent
# for 4 days in two years already fails.
ZERO_RUN_ALPHA = 0.01

EXPORT_DENSE = "dense"
EXPORT_SALES_ONLY = "sales-only (zero days omitted)"
EXPORT_MIXED = "mixed (zero rows recorded and days absent)"

RULES: dict[str, str] = {
    "frequency": "sales must be daily; weekly, monthly or every-N-days data is refused",
    "duplicates_identical": "identical rows for one product and day kept once",
    "duplicates_conflicting": "differing rows for one product and day summed",
    "negative_sales": "net returns received (load-sales --negative keep): clipped to 0",
    "missing_values": "interpolated linearly between the product's neighbouring days",
    "gap_days": "a product absent while others have rows (dropped zero-sales day): 0 sales",
    "inferred_zero_days": "a sales-only export's gap days in runs plausible for the "
    "product's rate of sale days: zeros, not counted as filled",
    "closure_days": "every product absent on a holiday, a store-calendar day or an "
    "isolated day: store closed, 0 sales",
    "missing_days": "every product absent in a long run or a weekly pattern: missing "
    "data, not filled (no window or metric uses them)",
    "large_gaps": "a product's run of absent days longer than max_gap_days: filled, reported",
    "sparse": "fewer than min_observations recorded days: augmented (bounded share)",
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
    "inferred_zero_days",
    "closure_days",
    "missing_days",
    "large_gaps",
    "longest_gap",
)


class FrequencyError(DataError):
    """The sales are not daily; the message names the detected frequency."""

    def __init__(self, frequency: Frequency) -> None:
        self.frequency = frequency
        super().__init__(frequency.message())


@dataclass(frozen=True)
class QualityReport:
    """Per-product counts of each finding plus the totals, the rules and the failures."""

    per_product: pd.DataFrame  # index product_id; COUNT_COLUMNS + sparse (bool)
    dropped_products: tuple[str, ...] = ()
    closure_dates: tuple[str, ...] = ()  # filled as closures (every kind)
    closure_kinds: dict[str, list[str]] = field(default_factory=dict)  # kind -> dates
    missing_dates: tuple[str, ...] = ()  # every product absent, not filled
    missing_reasons: tuple[str, ...] = ()  # why those days are missing data
    frequency: dict[str, Any] = field(default_factory=dict)
    export_kind: str = EXPORT_DENSE
    negative_units: float = 0.0  # units returned on the negative rows received
    grid_days: int = 0  # product-days of the cleaned grid
    calendar_days: int = 0  # days from the first to the last date of the data
    augmentation: dict[str, Any] = field(default_factory=dict)  # set by `augment`
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

    def shares(self) -> dict[str, float]:
        """filled: share of product-days filled (inferred zeros excepted); inferred_zeros:
        share of product-days that are a sales-only export's inferred zeros; missing: share
        of calendar days missing; sparse: share of products sparse."""
        t = self.totals()
        filled = t["gap_days"] - t["inferred_zero_days"] + t["closure_days"]
        return {
            "filled": filled / self.grid_days if self.grid_days else 0.0,
            "inferred_zeros": t["inferred_zero_days"] / self.grid_days if self.grid_days else 0.0,
            "missing": len(self.missing_dates) / self.calendar_days if self.calendar_days else 0.0,
            "sparse": t["sparse_products"] / t["products"] if t["products"] else 0.0,
        }

    @property
    def failures(self) -> tuple[str, ...]:
        """Failed data-quality rules, each a short reason; any of them blocks promotion."""
        t, s, out = self.totals(), self.shares(), []
        if s["filled"] > MAX_FILLED_SHARE:
            out.append(
                f"mostly_filled: {s['filled']:.0%} of product-days were filled, not observed "
                f"(limit {MAX_FILLED_SHARE:.0%}; export {self.export_kind}"
                + (
                    f", {s['inferred_zeros']:.0%} more were inferred zeros)"
                    if s["inferred_zeros"]
                    else ")"
                )
            )
        if s["missing"] > MAX_MISSING_SHARE:
            out.append(
                f"mostly_missing: {s['missing']:.0%} of the calendar is missing data "
                f"(limit {MAX_MISSING_SHARE:.0%})"
            )
        if s["sparse"] > MAX_SPARSE_SHARE:
            out.append(
                f"mostly_sparse: {t['sparse_products']} of {t['products']} products have fewer "
                "than min_observations recorded days: check the export upstream"
            )
        if self.augmentation.get("wanted_share", 0.0) > MAX_WANTED_SYNTHETIC_SHARE:
            out.append(
                f"mostly_synthetic: augmentation wanted "
                f"{self.augmentation['wanted_share']:.0%} synthetic training windows; capped "
                f"at {self.augmentation['max_share']:.0%}"
            )
        return tuple(out)

    def with_augmentation(self, augmentation: dict[str, Any]) -> QualityReport:
        """The same report with the augmentation's figures (see `augment`)."""
        return dataclasses.replace(self, augmentation=dict(augmentation))

    def table(self) -> list[dict[str, Any]]:
        """One row per rule: what was found, what was done, why (the report's table)."""
        t = self.totals()
        kinds = {k: len(v) for k, v in self.closure_kinds.items() if v}
        closure_why = ", ".join(f"{n} {k}" for k, n in kinds.items()) or "none"
        missing_why = "; ".join(self.missing_reasons) or "none"
        freq = self.frequency.get("kind", "unknown")
        aug = self.augmentation
        rows = [
            (
                "frequency",
                freq,
                "accepted" if freq in ("daily", "unknown") else "refused",
                f"{self.frequency.get('agreeing', 0)} of {self.frequency.get('products', 0)} "
                "products step 1 day"
                if freq == "daily"
                else "the trainer needs daily sales",
            ),
            ("export", self.export_kind, *self._export_action(t)),
            (
                "duplicates",
                t["duplicates_identical"] + t["duplicates_conflicting"],
                "identical kept once, differing summed",
                "a double load or partial records",
            ),
            (
                "negative_sales",
                t["negative_sales"],
                f"clipped to 0 ({self.negative_units:g} units returned)",
                "net returns (load-sales --negative keep); demand is not negative",
            ),
            (
                "missing_values",
                t["missing_values"],
                "interpolated",
                "a recorded day with an unknown count is not a zero",
            ),
            (
                "gap_days",
                t["gap_days"],
                "filled with 0",
                "the product was absent while others sold: a dropped zero-sales day",
            ),
            (
                "inferred_zero_days",
                t["inferred_zero_days"],
                "0 sales, not counted as filled",
                "sales-only export: absent in a run plausible for the product's sale-day rate",
            ),
            (
                "closure_days",
                len(self.closure_dates),
                "filled with 0 for every product",
                f"every product absent: {closure_why}",
            ),
            (
                "missing_days",
                len(self.missing_dates),
                "not filled (left out)",
                f"every product absent: {missing_why}",
            ),
            (
                "large_gaps",
                t["large_gaps"],
                "filled with 0, reported",
                "a product absent longer than max_gap_days while others sold",
            ),
            (
                "sparse_products",
                t["sparse_products"],
                f"augmented: {aug.get('synthetic_series', 0)} synthetic series, "
                f"{aug.get('share', 0.0):.0%} of training windows "
                f"(cap {aug.get('max_share', 0.0):.0%})"
                if aug
                else "flagged",
                "fewer than min_observations recorded days",
            ),
            ("dropped_products", t["dropped_products"], "dropped", "no usable value"),
        ]
        return [
            {"rule": r, "found": found, "done": done, "why": why} for r, found, done, why in rows
        ]

    def _export_action(self, t: dict[str, int]) -> tuple[str, str]:
        """(what was done, why) for the export kind's row of the table."""
        if self.export_kind == EXPORT_SALES_ONLY:
            return (
                f"{t['inferred_zero_days']} of {t['gap_days']} gap days read as zero sales "
                "(not counted as filled); the rest filled and counted",
                "no row has 0 units: the export writes only days with sales",
            )
        if self.export_kind == EXPORT_MIXED:
            return (
                "gap days filled with 0 and counted as filled",
                "the export writes zero rows, so an absent day is not a zero",
            )
        return "-", "every product has a row on every day of its grid"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable report (totals, rules, per-product rows with a finding)."""
        flagged = self.per_product[
            self.per_product[list(COUNT_COLUMNS[2:])].gt(0).any(axis=1) | self.per_product["sparse"]
        ]
        return {
            "totals": self.totals(),
            "shares": {k: round(v, 4) for k, v in self.shares().items()},
            "failures": list(self.failures),
            "frequency": dict(self.frequency),
            "export_kind": self.export_kind,
            "table": self.table(),
            "negative_units": float(self.negative_units),
            "augmentation": dict(self.augmentation),
            "rules": self.rules,
            "closure_dates": list(self.closure_dates),
            "closure_kinds": {k: list(v) for k, v in self.closure_kinds.items()},
            "missing_dates": list(self.missing_dates),
            "missing_reasons": list(self.missing_reasons),
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


def plausible_zero_runs(present: np.ndarray, sale_days: int, days: int) -> np.ndarray:
    """The days of `present`'s False runs that are plausible runs of zero sales.

    A run of `L` absent days is plausible for a product with `sale_days` of `days` (rate
    `q`) when the expected number of runs at least that long, `days q (1 - q)^L`, is at
    least `ZERO_RUN_ALPHA`.
    """
    out = np.zeros(len(present), dtype=bool)
    if not days or sale_days >= days:
        return out
    padded = np.concatenate(([True], present, [True])).astype(np.int8)
    edges = np.diff(padded)
    for start, stop in zip(np.flatnonzero(edges == -1), np.flatnonzero(edges == 1), strict=True):
        if _plausible_run(sale_days, days, stop - start):
            out[start:stop] = True
    return out


def _plausible_run(sale_days: int, days: int, length: int) -> bool:
    """Whether `length` absent days in a row are a plausible zero run for a product with
    `sale_days` of `days` (`plausible_zero_runs`' rule)."""
    q = sale_days / days
    return q < 1.0 and days * q * (1.0 - q) ** length >= ZERO_RUN_ALPHA


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_store_calendar(
    entries: tuple[str, ...] | list[str],
) -> tuple[set[pd.Timestamp], set[int]]:
    """(dates, weekdays 0=Monday) of a store calendar: "YYYY-MM-DD" dates or weekday names."""
    dates: set[pd.Timestamp] = set()
    weekdays: set[int] = set()
    for entry in entries:
        text = str(entry).strip().lower()
        match = [i for i, name in enumerate(WEEKDAYS) if len(text) >= 3 and name.startswith(text)]
        if match:
            weekdays.add(match[0])
            continue
        try:
            dates.add(pd.Timestamp(str(entry).strip()).normalize())
        except ValueError:
            raise DataError(
                f"closure_dates entry {entry!r} is neither a YYYY-MM-DD date nor a weekday name"
            ) from None
    return dates, weekdays


def classify_absent_days(
    full: pd.DatetimeIndex,
    absent: pd.DatetimeIndex,
    *,
    holiday_country: str,
    store_calendar: tuple[str, ...] | list[str] = (),
) -> tuple[dict[str, pd.DatetimeIndex], pd.DatetimeIndex, list[str]]:
    """Split the days absent for every product into closures (by kind) and missing data.

    Returns ({"public holiday" | "store calendar" | "isolated day": dates}, missing dates,
    the reasons the missing days are missing).
    """
    kinds: dict[str, pd.DatetimeIndex] = {
        "public holiday": pd.DatetimeIndex([]),
        "store calendar": pd.DatetimeIndex([]),
        "isolated day": pd.DatetimeIndex([]),
    }
    if absent.empty:
        return kinds, pd.DatetimeIndex([]), []
    cal_dates, cal_weekdays = parse_store_calendar(store_calendar)
    on_calendar = absent.isin(list(cal_dates)) | absent.day_of_week.isin(list(cal_weekdays))
    try:
        public = holidays.country_holidays(
            holiday_country, years=range(full.min().year, full.max().year + 1)
        )
    except NotImplementedError as exc:
        raise DataError(f"holiday_country {holiday_country!r} is not known to `holidays`") from exc
    is_holiday = np.array([d.date() in public for d in absent], dtype=bool)

    # Runs of consecutive all-product absent days (on the full calendar).
    pos = full.get_indexer(absent)
    run_id = np.concatenate(([0], np.cumsum(np.diff(pos) != 1)))
    run_len = np.bincount(run_id)[run_id]
    long_run = run_len > MAX_CLOSURE_RUN
    reasons: list[str] = []
    if long_run.any():
        n_runs = len(np.unique(run_id[long_run]))
        reasons.append(
            f"{n_runs} run(s) of more than {MAX_CLOSURE_RUN} consecutive days (longest "
            f"{int(run_len.max())}, from {absent[long_run][0].date()})"
        )

    # A weekday absent for every product in most weeks is a pattern, not a closure.
    weeks = max(1, len(full) // 7)
    # Holidays count too: an absence that comes every week is not explained by them.
    short = ~long_run & ~on_calendar
    regular = np.zeros(len(absent), dtype=bool)
    for wd in range(7):
        on_wd = short & (absent.day_of_week == wd)
        n = int(on_wd.sum())
        if n >= MIN_REGULAR_WEEKS and n / weeks >= REGULAR_SHARE:
            regular |= on_wd
            reasons.append(
                f"{WEEKDAYS[wd].capitalize()}s absent for every product in {n} of {weeks} "
                f"weeks (a regular pattern; if the store closes on {WEEKDAYS[wd]}s, add "
                f'"{WEEKDAYS[wd]}" to closure_dates)'
            )
    missing = (long_run & ~on_calendar) | regular
    kinds["store calendar"] = absent[on_calendar]
    kinds["public holiday"] = absent[~on_calendar & ~missing & is_holiday]
    kinds["isolated day"] = absent[~on_calendar & ~missing & ~is_holiday]
    return kinds, absent[missing], reasons


def check_quality(sales: pd.DataFrame, cfg: TrainConfig) -> QualityResult:
    """Report every data-quality finding per product and return the cleaned daily grid.

    Raises `FrequencyError` when the sales are not daily, `DataError` for unusable data.
    """
    frame = validate_long(sales)
    frequency = detect_frequency(frame)
    if not frequency.is_daily:
        log.error("sales are not daily", extra=frequency.to_dict())
        raise FrequencyError(frequency)
    rows = frame.groupby("product_id").size()
    zero_rows = int((frame["units_sold"] == 0).sum())
    # No row with 0 units: if days are absent, the export writes only days with sales.
    sales_only = zero_rows == 0

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

    negative = frame["units_sold"] < 0
    negatives = frame[negative].groupby("product_id").size()
    negative_units = abs(float(frame.loc[negative, "units_sold"].sum()))
    frame.loc[negative, "units_sold"] = 0.0
    missing = frame[frame["units_sold"].isna()].groupby("product_id").size()

    all_dates = pd.DatetimeIndex(frame["date"].unique()).sort_values()
    end = all_dates.max()
    full = pd.date_range(all_dates.min(), end, freq="D")
    n_products = frame["product_id"].nunique()
    closure_kinds: dict[str, pd.DatetimeIndex] = {}
    missing_dates = pd.DatetimeIndex([])
    missing_reasons: list[str] = []
    if n_products > 1:
        closure_kinds, missing_dates, missing_reasons = classify_absent_days(
            full,
            full.difference(all_dates),
            holiday_country=cfg.holiday_country,
            store_calendar=cfg.closure_dates,
        )
    closure_dates = pd.DatetimeIndex(sorted(d for dates in closure_kinds.values() for d in dates))

    pieces: list[pd.DataFrame] = []
    stats: dict[str, dict[str, int]] = {}
    dropped: list[str] = []
    grid_days = 0
    for pid, g in frame.sort_values(key).groupby("product_id", sort=True):
        if g["units_sold"].notna().sum() == 0:
            dropped.append(str(pid))
            continue
        # A product whose last record is at most max_gap_days before the data's last day
        # (or, in a sales-only export, a plausible zero run for its rate of sale days) is
        # still sold: its missing tail days are dropped zero-sales days. Otherwise it is
        # taken as discontinued and its grid ends at its last record.
        last = g["date"].iloc[-1]
        tail = (end - last).days
        span = (end - g["date"].iloc[0]).days + 1
        if tail <= cfg.max_gap_days or (sales_only and _plausible_run(len(g), span, tail)):
            last = end
        grid = pd.date_range(g["date"].iloc[0], last, freq="D")
        g = g.set_index("date").reindex(grid)
        observed = g["product_id"].notna().to_numpy()
        absent = ~observed
        closure = absent & grid.isin(closure_dates)
        unknown = absent & grid.isin(missing_dates)
        runs = _gap_runs(observed | unknown)
        gap = absent & ~closure & ~unknown
        inferred = np.zeros(len(gap), dtype=bool)
        if sales_only and gap.any():
            known = int((~unknown).sum())
            inferred = gap & plausible_zero_runs(observed | unknown, int(observed.sum()), known)
        units = g["units_sold"].copy()
        # Interpolate only the recorded-but-missing values; absent days are zeros.
        units[absent] = 0.0
        units = units.interpolate(method="linear", limit_direction="both")
        stats[str(pid)] = {
            "observed_days": int(observed.sum()),
            "gap_days": int(gap.sum()),
            "inferred_zero_days": int(inferred.sum()),
            "closure_days": int(closure.sum()),
            "missing_days": int(unknown.sum()),
            "large_gaps": int((runs > cfg.max_gap_days).sum()),
            "longest_gap": int(runs.max()) if runs.size else 0,
        }
        keep = ~unknown  # missing data stays missing: no row, so no window uses it
        grid_days += int(keep.sum())
        pieces.append(
            pd.DataFrame(
                {
                    "product_id": str(pid),
                    "date": grid[keep],
                    "units_sold": units.to_numpy(dtype=float)[keep],
                    "on_promotion": g["on_promotion"].fillna(0).astype(int).to_numpy()[keep],
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
    # A sales-only export's inferred zeros are known days of the product's history.
    per["sparse"] = (per["observed_days"] + per["inferred_zero_days"]) < cfg.min_observations
    per = per[[*COUNT_COLUMNS, "sparse"]]
    gap_total = int(per["gap_days"].sum())
    if gap_total == 0:
        export_kind = EXPORT_DENSE
    elif sales_only:
        export_kind = EXPORT_SALES_ONLY
    else:
        export_kind = EXPORT_MIXED
    fmt = "%Y-%m-%d"
    report = QualityReport(
        per_product=per,
        dropped_products=tuple(dropped),
        closure_dates=tuple(d.strftime(fmt) for d in closure_dates),
        closure_kinds={k: [d.strftime(fmt) for d in v] for k, v in closure_kinds.items()},
        missing_dates=tuple(d.strftime(fmt) for d in missing_dates),
        missing_reasons=tuple(missing_reasons),
        frequency=frequency.to_dict(),
        export_kind=export_kind,
        negative_units=negative_units,
        grid_days=grid_days,
        calendar_days=len(full),
    )
    log.info(
        "data quality checked",
        extra=report.totals() | {"export_kind": export_kind, "missing_dates": len(missing_dates)},
    )
    if missing_reasons:
        log.warning(
            "days absent for every product are missing data, not filled",
            extra={"days": len(missing_dates), "reasons": missing_reasons},
        )
    clean = pd.concat(pieces, ignore_index=True)
    return QualityResult(clean=clean, report=report)

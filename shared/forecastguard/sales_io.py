"""Reading sales files (long or wide format), validating them, and loading them.

Long format: one row per (product, date) with columns `product_id`, `date` (or
`sale_date`) and `units` (or `units_sold`), optionally `on_promotion`.
Wide format (the pasta data set): `DATE` and one `QTY_<product>` column per product,
optionally `PROMO_<product>` flags.

Validation never writes: a file with problems raises `SalesFileError` listing the
offending rows, unless problems are to be skipped, in which case they are reported.

Negative units (returns exceeding sales) follow an explicit policy (`NEGATIVE_POLICIES`):
`reject` (the default: a problem row like any other), `clip` (stored as 0, counted) or
`keep` (stored as net returns, counted; the trainer counts and clips them for training).
The sampling frequency is detected (`forecastguard.frequency`) and reported; anything
but daily is a warning here and refused by the trainer.
Loading is one transaction of upserts, so a failed load writes nothing and loading
the same file twice changes nothing.

Product data is hostile input (docs/security.md): an id with a control or invisible
character (Unicode categories Cc, Cf, Zl, Zp) is a problem row, so is a row with more
units than `max_units`; duplicate or ambiguous columns refuse the file, and so does a
file larger than `max_bytes` (checked before it is read).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.db import schema
from forecastguard.db.upsert import upsert_rows
from forecastguard.frequency import Frequency, detect_frequency
from forecastguard.safetext import invisible_characters, terminal_safe

_LONG_ALIASES = {
    "product_id": ("product_id", "product", "sku"),
    "date": ("date", "sale_date", "day"),
    "units": ("units", "units_sold", "qty", "quantity"),
}
MAX_LISTED = 20
MAX_UNITS = 1_000_000.0  # the default of SALES_MAX_UNITS
MAX_BYTES = 64 * 2**20  # the default of SALES_MAX_BYTES
WRITE_CHUNK_ROWS = 50_000
NegativePolicy = Literal["reject", "clip", "keep"]
NEGATIVE_POLICIES: tuple[str, ...] = ("reject", "clip", "keep")


@dataclass(frozen=True)
class RowProblem:
    """One offending row: its line in the file (header = line 1), what and why."""

    line: int
    product_id: str
    column: str
    value: str
    problem: str

    def __str__(self) -> str:
        # The id is data: printed with its control and invisible characters escaped.
        who = f" product {terminal_safe(self.product_id)}" if self.product_id else ""
        return f"line {self.line}{who}: {self.column}={self.value!r}: {self.problem}"


@dataclass
class SalesFrame:
    """Validated sales in long form, with the problems found (skipped rows)."""

    sales: pd.DataFrame  # product_id, sale_date (date), units_sold (float)
    promotions: pd.DataFrame | None  # product_id, promo_date, on_promotion (bool); None = no flags
    problems: list[RowProblem] = field(default_factory=list)
    source_format: str = "long"
    negative_policy: str = "reject"
    negative_rows: int = 0  # negative rows clipped to 0 or kept (not the rejected ones)
    negative_units: float = 0.0  # units returned on those rows

    @property
    def frequency(self) -> Frequency:
        """The detected sampling frequency of the valid rows."""
        return detect_frequency(self.sales, date="sale_date")

    def warnings(self) -> list[str]:
        """What the caller should know before training on these sales."""
        out = []
        freq = self.frequency
        if not freq.is_daily:
            out.append(freq.message() + "; the trainer will refuse them")
        if self.negative_rows:
            done = "clipped to 0" if self.negative_policy == "clip" else "kept as net returns"
            out.append(
                f"{self.negative_rows} row(s) with negative units ({self.negative_units:g} "
                f"units returned) {done} (--negative {self.negative_policy})"
            )
        return out


class SalesFileError(ValueError):
    """The file cannot be read, or has rows that break the rules (listed)."""

    def __init__(self, message: str, problems: Iterable[RowProblem] = ()) -> None:
        self.problems = list(problems)
        listed = "\n".join(f"  {p}" for p in self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        if more > 0:
            listed += f"\n  ... and {more} more"
        super().__init__(message + (f"\n{listed}" if listed else ""))


def read_sales_csv(
    path: str | Path,
    on_error: Literal["fail", "skip"] = "fail",
    negative: NegativePolicy = "reject",
    *,
    max_units: float = MAX_UNITS,
    max_bytes: int = MAX_BYTES,
) -> SalesFrame:
    """Read and validate a sales CSV in long or wide format (`negative`: see the module).

    A file over `max_bytes` is refused before it is read (reading takes about 15 times
    its size in memory: docs/security.md).
    """
    path = Path(path)
    if not path.is_file():
        raise SalesFileError(f"sales file not found: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise SalesFileError(
            f"{path} is {size:,} bytes, more than the limit of {max_bytes:,} "
            "(SALES_MAX_BYTES or --max-bytes); split it and load the parts, or raise the limit"
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        csv.Error,
    ) as exc:
        raise SalesFileError(f"{path} is not a readable CSV file: {exc}") from None
    _refuse_duplicate_columns(header, str(path))
    return parse_sales_frame(
        raw, on_error=on_error, source=str(path), negative=negative, max_units=max_units
    )


def _refuse_duplicate_columns(columns: Iterable[object], source: str) -> None:
    """Two columns of one name (spaces and case aside) would silently use the first."""
    names = [str(c).strip().lower() for c in columns]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise SalesFileError(
            f"{source}: duplicate column(s) {', '.join(map(repr, dups))}: each column must "
            "appear once"
        )


def parse_sales_frame(
    raw: pd.DataFrame,
    on_error: Literal["fail", "skip"] = "fail",
    source: str = "input",
    negative: NegativePolicy = "reject",
    *,
    max_units: float = MAX_UNITS,
) -> SalesFrame:
    """Validate a frame of strings as read from a CSV (long or wide format)."""
    if negative not in NEGATIVE_POLICIES:
        raise ValueError(f"negative policy must be one of {NEGATIVE_POLICIES}, got {negative!r}")
    _refuse_duplicate_columns(raw.columns, source)
    columns = {c.strip(): c for c in raw.columns}
    if "DATE" in columns and any(c.startswith("QTY_") for c in columns):
        long, promo, fmt = _wide_to_long(raw.rename(columns=str.strip))
    else:
        long, promo, fmt = _long_columns(raw.rename(columns=str.strip), source), None, "long"
        if "on_promotion" in long:
            promo = long[["line", "product_id", "date", "on_promotion"]]
    if long.empty:
        raise SalesFileError(f"{source} has no data rows")

    problems: list[RowProblem] = []
    dates = pd.to_datetime(long["date"].str.strip(), format="%Y-%m-%d", errors="coerce")
    units = pd.to_numeric(long["units"].str.strip(), errors="coerce")
    pid = long["product_id"].str.strip()

    def flag(mask: pd.Series, column: str, values: pd.Series, problem: str) -> None:
        for line, product, value in zip(
            long.loc[mask, "line"], pid[mask], values[mask], strict=True
        ):
            problems.append(RowProblem(int(line), product, column, str(value), problem))

    bad_pid = (pid == "") | (pid.str.len() > schema.PRODUCT_ID)
    flag(bad_pid, "product_id", pid, "must be 1-64 characters")
    hidden = pid.map(invisible_characters)
    invisible = hidden.map(bool)
    for line, product, chars in zip(
        long.loc[invisible, "line"], pid[invisible], hidden[invisible], strict=True
    ):
        problems.append(
            RowProblem(
                int(line),
                product,
                "product_id",
                product,
                f"contains control or invisible character(s) {', '.join(chars)}",
            )
        )
    bad_pid |= invisible
    flag(dates.isna(), "date", long["date"], "not a date (YYYY-MM-DD)")
    non_numeric = units.isna() | ~np.isfinite(units.fillna(0))
    flag(non_numeric, "units", long["units"], "not a number")
    too_many = ~non_numeric & (units.abs() > max_units)
    flag(
        too_many,
        "units",
        long["units"],
        f"more than {max_units:g} units (SALES_MAX_UNITS or --max-units)",
    )
    non_numeric |= too_many
    negative_rows = units < 0
    if negative == "reject":
        flag(
            negative_rows,
            "units",
            long["units"],
            "negative units (--negative clip stores 0, --negative keep net returns)",
        )
        rejected = negative_rows
    else:
        rejected = pd.Series(False, index=units.index)
    valid = ~(bad_pid | dates.isna() | non_numeric | rejected)
    dup = valid & pd.DataFrame({"p": pid, "d": dates}).duplicated(keep=False)
    flag(dup, "date", long["date"], "duplicate (product, date) row")
    valid &= ~dup

    problems.sort(key=lambda p: (p.line, p.product_id))
    if problems and on_error == "fail":
        rows = len({(p.line, p.product_id) for p in problems})
        raise SalesFileError(
            f"{source}: {rows} row(s) break the rules; nothing was loaded", problems
        )

    counted = valid & negative_rows & (negative != "reject")
    n_negative, returned = int(counted.sum()), float(-units[counted].sum())
    if negative == "clip":
        units = units.where(~counted, 0.0)
    sales = pd.DataFrame(
        {
            "product_id": pid[valid].to_numpy(),
            "sale_date": dates[valid].dt.date.to_numpy(),
            "units_sold": units[valid].astype(float).to_numpy(),
        }
    )
    promotions = None
    if promo is not None:
        flags = promo.loc[valid.to_numpy()] if len(promo) == len(long) else promo
        on = flags["on_promotion"].str.strip().str.lower().isin({"1", "true", "yes", "1.0"})
        promotions = pd.DataFrame(
            {
                "product_id": flags["product_id"].str.strip().to_numpy(),
                "promo_date": pd.to_datetime(flags["date"].str.strip()).dt.date.to_numpy(),
                "on_promotion": on.to_numpy(),
            }
        )
    return SalesFrame(sales, promotions, problems, fmt, negative, n_negative, returned)


def _long_columns(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    lower = {c.lower(): c for c in raw.columns}
    picked = {}
    for name, aliases in _LONG_ALIASES.items():
        present = [lower[a] for a in aliases if a in lower]
        if len(present) > 1:
            raise SalesFileError(
                f"{source}: ambiguous {name} column: {', '.join(map(repr, present))} are "
                "all read as it; keep one"
            )
        found = present[0] if present else None
        if found is None:
            raise SalesFileError(
                f"{source}: no {name} column (expected one of {', '.join(aliases)}; "
                f"or the wide format with DATE and QTY_* columns); found {list(raw.columns)}"
            )
        picked[name] = raw[found].astype(str)
    out = pd.DataFrame(picked)
    if "on_promotion" in lower:
        out["on_promotion"] = raw[lower["on_promotion"]].astype(str)
    out.insert(0, "line", np.arange(2, len(out) + 2))
    return out


def _wide_to_long(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    qty = [c for c in raw.columns if c.startswith("QTY_")]
    promo_cols = [c for c in raw.columns if c.startswith("PROMO_")]
    frame = raw.assign(line=np.arange(2, len(raw) + 2))
    long = frame.melt(id_vars=["line", "DATE"], value_vars=qty, var_name="product_id")
    long = long.rename(columns={"DATE": "date", "value": "units"})
    long["product_id"] = long["product_id"].str.removeprefix("QTY_")
    long = long[["line", "product_id", "date", "units"]].astype({"units": str})
    promo = None
    if promo_cols:
        p = frame.melt(id_vars=["line", "DATE"], value_vars=promo_cols, var_name="product_id")
        p["product_id"] = p["product_id"].str.removeprefix("PROMO_")
        p = p.rename(columns={"DATE": "date", "value": "on_promotion"})
        # Align with the sales rows (same product and line); products without flags get none.
        promo = long[["line", "product_id", "date"]].merge(
            p[["line", "product_id", "on_promotion"]], on=["line", "product_id"], how="left"
        )
        promo["on_promotion"] = promo["on_promotion"].fillna("0").astype(str)
    return long.reset_index(drop=True), promo, "wide"


@dataclass(frozen=True)
class LoadResult:
    """What a load did."""

    rows: int
    products: int
    first_date: object
    last_date: object
    promotion_days: int
    skipped: int


def write_sales(conn: sa.Connection, sales: pd.DataFrame, promotions: pd.DataFrame | None) -> int:
    """Upsert sales rows and their promotion flags inside the caller's transaction.

    `sales` has product_id, sale_date, units_sold; `promotions` (or None when the data
    has no flags) has product_id, promo_date, on_promotion. The flags are the truth for
    the products and days they cover: earlier promotion days there are cleared first.
    Returns the number of promotion days written.
    """
    rows = sales[["product_id", "sale_date", "units_sold"]]
    # A slice at a time: the whole file as dicts took more memory than the file's frame.
    for start in range(0, len(rows), WRITE_CHUNK_ROWS):
        upsert_rows(
            conn, schema.sales, rows.iloc[start : start + WRITE_CHUNK_ROWS].to_dict("records")
        )
    if promotions is None or promotions.empty:
        return 0
    products = sorted(promotions["product_id"].unique())
    lo, hi = promotions["promo_date"].min(), promotions["promo_date"].max()
    for start in range(0, len(products), 500):
        conn.execute(
            schema.promotions.delete().where(
                schema.promotions.c.product_id.in_(products[start : start + 500]),
                schema.promotions.c.promo_date.between(lo, hi),
            )
        )
    on = promotions.loc[promotions["on_promotion"].astype(bool), ["product_id", "promo_date"]]
    return upsert_rows(conn, schema.promotions, on.to_dict("records"))


def load_sales(engine: sa.Engine, frame: SalesFrame) -> LoadResult:
    """Upsert the sales (and promotion days) in one transaction."""
    sales = frame.sales
    with engine.begin() as conn:
        promo_days = write_sales(conn, sales, frame.promotions)
    return LoadResult(
        rows=len(sales),
        products=int(sales["product_id"].nunique()),
        first_date=sales["sale_date"].min(),
        last_date=sales["sale_date"].max(),
        promotion_days=promo_days,
        skipped=len({(p.line, p.product_id) for p in frame.problems}),
    )

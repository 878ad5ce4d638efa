"""The health check's data: the window's sales and forecasts, read in one query per table.

Days are counted from `hist_start`, the first day read: the history before the window
(at least four weeks, and at least the reference window), then the window itself.

The (product, day) rows of each table are aggregated per product in the database
(GROUP_CONCAT of "day:units" and "day:predicted") and parsed by pandas' C reader: the
drivers decode rows one by one in Python, and 600,000 rows take longer than the whole
check may (3 s). Numbers come back as text: on SQLite with 15 significant digits (a whole
number of units as an integer's text); on MySQL the units as MySQL writes a DOUBLE, and
the forecasts and their intervals as two integers each (a fixed point number's whole
part and fraction, or a mantissa and exponent) that give the stored double exactly
(`_exact`: MySQL's double-to-text was a third of the server's work for a 10,000-product
check).

A value that is not a finite number (SQLite stores `inf` or the text `'abc'` in a REAL
column) is bad data (issue 14): a sale with a bad `units_sold` is left out, a bad
forecast counts as no forecast, and `WindowData.bad_values` says which product had how
many, so the check reports them instead of failing or returning `Infinity`.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.db.schema import model_residuals, predictions, sales

log = logging.getLogger(__name__)

MIN_HISTORY_DAYS = 28  # four weeks of history for the seasonal-naive scale
# The forecasts (with the window's intervals; on SQLite the reference's days and the
# window's apart) are read on their own connections (READ_WORKERS threads) while the
# sales are (issue 23: the database's aggregation of 120 days of rows was most of a
# check's time; on two cores the reads overlap).
READ_WORKERS = 2
_JULIAN_DAY_OF_ORDINAL_0 = 1721424.5  # julianday('0001-01-01') - date(1, 1, 1).toordinal()
_TO_DAYS_OF_ORDINAL_0 = 365  # MySQL's TO_DAYS('0001-01-01') - date(1, 1, 1).toordinal()


@dataclass(frozen=True)
class WindowData:
    """Sales (with the forecast for that day, NaN if none) of every product, by day offset."""

    as_of: date
    window_days: int
    history_days: int
    products: np.ndarray  # product ids (str), sorted; `codes` index into it
    codes: np.ndarray  # int64 product code of each row
    day: np.ndarray  # int64 days since hist_start
    units: np.ndarray  # actual units sold
    predicted: np.ndarray  # predicted units, NaN where the day has no forecast
    model_versions: tuple[str, ...] = ()  # versions that forecast the window
    current_version: str | None = None  # the newest of them
    last_sale_date: date | None = None  # newest sales day on or before as_of
    # Per product: the model versions that forecast the reference window (None: unknown,
    # taken to be the current model). Errors of another model are no reference.
    reference_versions: tuple[frozenset[str], ...] | None = None
    # Values that are not finite numbers, per (product id, "sales" | "predictions"): count.
    bad_values: tuple[tuple[str, str, int], ...] = ()
    # Issue 23: how many days before the window the served model's errors are the
    # reference (None: the window's length), and per product the day offset where its open
    # drift episode began (none: `NO_EPISODE`) and how many checks flagged it in a row
    # (`forecastguard.health.episodes`; None: no episodes known).
    reference_days: int | None = None
    drift_since: np.ndarray | None = None
    drift_checks: np.ndarray | None = None
    # The served interval of each row's forecast (issue 27), window days only: P10 and
    # P90 in units, NaN where none (None: no forecast in the window has one).
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    def subset(self, product_ids: Sequence[str] | np.ndarray) -> WindowData:
        """The same window for only these products (ids not in it are ignored).

        The window's global facts are kept (as_of, the current model and the versions
        that forecast the window, the last sale date), so the check's per-product phase
        on the subset yields the same rows as on every product (a batch of a Beam job).
        """
        keep = np.isin(self.products, np.asarray(product_ids, dtype=object))
        new_code = np.cumsum(keep) - 1
        rows = keep[self.codes]
        chosen = set(self.products[keep].tolist())
        return replace(
            self,
            products=self.products[keep],
            codes=new_code[self.codes[rows]].astype(np.int64),
            day=self.day[rows],
            units=self.units[rows],
            predicted=self.predicted[rows],
            reference_versions=None
            if self.reference_versions is None
            else tuple(v for v, k in zip(self.reference_versions, keep, strict=True) if k),
            bad_values=tuple(b for b in self.bad_values if b[0] in chosen),
            drift_since=None if self.drift_since is None else self.drift_since[keep],
            drift_checks=None if self.drift_checks is None else self.drift_checks[keep],
            lower=None if self.lower is None else self.lower[rows],
            upper=None if self.upper is None else self.upper[rows],
        )

    @property
    def ref_days(self) -> int:
        """The days before the window whose served errors are the reference."""
        return self.reference_days or self.window_days

    def bad_data(self) -> list[dict[str, object]]:
        """Per product with bad values: {product_id, sales, predictions} (counts)."""
        out: dict[str, dict[str, object]] = {}
        for product, table, n in self.bad_values:
            entry = out.setdefault(product, {"product_id": product, "sales": 0, "predictions": 0})
            entry[table] = int(entry[table]) + n  # type: ignore[call-overload]
        return [out[p] for p in sorted(out)]

    def same_model_reference(self) -> np.ndarray:
        """Per product: were its reference-window forecasts all made by the current model?"""
        if self.reference_versions is None:
            return np.ones(len(self.products), bool)
        current = frozenset({self.current_version}) if self.current_version else frozenset()
        return np.fromiter(
            (v <= current for v in self.reference_versions), bool, len(self.reference_versions)
        )

    @property
    def window_end(self) -> date:
        """The last day of the window (= as_of)."""
        return self.as_of

    @property
    def window_start(self) -> date:
        """The first day of the window."""
        return self.as_of - timedelta(days=self.window_days - 1)

    @property
    def hist_start(self) -> date:
        """The first day read (day offset 0)."""
        return self.window_start - timedelta(days=self.history_days)

    @property
    def ref_start(self) -> date:
        """The first day of the reference window (the `window_days` days before)."""
        return self.window_start - timedelta(days=self.window_days)


def history_days(window_days: int, reference_days: int | None = None) -> int:
    """How many days before the window are read: the reference (the window's length, or
    `reference_days`), at least 4 weeks."""
    return max(window_days, reference_days or 0, MIN_HISTORY_DAYS)


NO_EPISODE = np.iinfo(np.int64).max  # `WindowData.drift_since` of a product without one


def with_episodes(data: WindowData, episodes: pd.DataFrame | None) -> WindowData:
    """`data` with the open drift episodes of its model (`episodes.load_episodes`'s frame:
    product_id, since, checks) as per-product day offsets and counts."""
    since = np.full(len(data.products), NO_EPISODE, dtype=np.int64)
    checks = np.zeros(len(data.products), dtype=np.int64)
    if episodes is not None and len(episodes):
        index = pd.Index(data.products).get_indexer(episodes["product_id"].astype(str))
        ok = index >= 0
        days = (pd.to_datetime(episodes["since"]) - pd.Timestamp(data.hist_start)).dt.days
        since[index[ok]] = days.to_numpy(np.int64)[ok]
        checks[index[ok]] = episodes["checks"].to_numpy(np.int64)[ok]
    return replace(data, drift_since=since, drift_checks=checks)


def _day_offset(column: sa.ColumnElement, start: date, dialect: str) -> sa.ColumnElement:
    if dialect == "sqlite":
        # A date's Julian day is n + 0.5 exactly: the difference is a whole number of days.
        start_jd = start.toordinal() + _JULIAN_DAY_OF_ORDINAL_0
        return sa.cast(sa.func.julianday(column) - sa.literal(start_jd, sa.Float), sa.Integer)
    # TO_DAYS less a number: DATEDIFF against the bound date converted it on every row.
    return sa.func.to_days(column) - sa.literal(start.toordinal() + _TO_DAYS_OF_ORDINAL_0)


def _as_text(expr: sa.ColumnElement) -> sa.ColumnElement:
    return expr if isinstance(expr.type, sa.String) else sa.cast(expr, sa.String)


def _joined(*exprs: sa.ColumnElement) -> sa.ColumnElement:
    """MySQL: the text "a:b:..." of numbers (or texts) `exprs`. CONCAT writes a number's
    text itself: a CAST(... AS CHAR) of each cost MariaDB about a fifth of a forecast
    read's CPU (1.8-2.2 s against 1.7-1.8 s for 1.2 million forecasts with intervals) for
    the same text."""
    args: list[Any] = []
    for expr in exprs:
        args += [sa.literal(":"), expr] if args else [expr]
    return sa.func.concat(*args, type_=sa.String)


_MANTISSA_BITS = 53
_MIN_EXPONENT = -1021  # a smaller double's mantissa is scaled as this exponent's
_FIXED_POINT_BITS = 10  # the fixed-point form: the value times 2**10 ...
_FRACTION_BITS = 52  # ... as a whole part and its fraction times 2**52
_EXPONENT_BIAS = 4096  # the general form's exponent less this: negative, unlike a fraction


def _exact(value: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    """A DOUBLE as MySQL should send it: on SQLite `value` itself (its 15-digit text is
    cheap); on MySQL the text "a:b" of two integers that give the stored double exactly
    (`_from_exact`). MySQL writes a BIGINT's text far faster than a DOUBLE's 17 digits
    (a forecast read: 0.8 s of the server's CPU against 1.4 s for 900,000 forecasts).

    Where 1 <= |value * 2**10| < 2**52 (forecasts from 0.001 to 4e12 units), the fixed
    point form: `a = floor(y)` and `b = (y - a) * 2**52` with `y = value * 2**10` (exact:
    y's fraction is a multiple of its last bit, at least 2**-52; `b >= 0`). Elsewhere the
    general form, `value = a * 2**(e - 53)` with `e = floor(log2 |value|)`, `a = value *
    2**-e * 2**53` (exact as multiplying by powers of two is, and an integer whichever way
    `log2` rounds) and `b = e - _EXPONENT_BIAS < 0`: the fixed point form costs MariaDB
    about 0.15 s less CPU a million values (no log2 or pow). 0 is "0:0" (-0 reads as 0);
    subnormals keep `_MIN_EXPONENT` (their mantissa is smaller); MySQL stores no NaN or
    infinity."""
    if dialect == "sqlite":
        return value
    scaled = value * sa.literal(1 << _FIXED_POINT_BITS)
    whole = sa.func.floor(scaled)
    fraction = (scaled - whole) * sa.literal(1 << _FRACTION_BITS)
    fixed = _joined(sa.cast(whole, sa.BigInteger), sa.cast(fraction, sa.BigInteger))
    # On the value itself: DBL_MAX * 2**10 is an error in MySQL (out of range).
    magnitude = sa.func.abs(value)
    in_fixed = sa.and_(
        magnitude >= sa.literal(2.0**-_FIXED_POINT_BITS, sa.Float),
        magnitude < sa.literal(1 << (_FRACTION_BITS - _FIXED_POINT_BITS)),
    )
    exponent = sa.func.greatest(
        sa.cast(sa.func.floor(sa.func.log2(sa.func.abs(value))), sa.BigInteger),
        sa.literal(_MIN_EXPONENT),
    )
    mantissa = value * sa.func.pow(2, -exponent) * sa.func.pow(2, _MANTISSA_BITS)
    general = _joined(sa.cast(mantissa, sa.BigInteger), exponent - sa.literal(_EXPONENT_BIAS))
    return sa.case((in_fixed, fixed), (value == 0, sa.literal("0:0")), else_=general)


def _from_exact(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The doubles of `_exact`'s integers (int64 arrays): `(a + b * 2**-52) * 2**-10`
    where `b >= 0` (the sum is the double `value * 2**10` itself: no rounding), else
    `a * 2**(b + _EXPONENT_BIAS - 53)`."""
    fixed = second >= 0
    out = second.astype(np.float64)
    out *= 2.0**-_FRACTION_BITS
    out += first
    out *= 2.0**-_FIXED_POINT_BITS
    if not fixed.all():
        general = ~fixed
        out[general] = np.ldexp(
            first[general].astype(np.float64),
            second[general] + (_EXPONENT_BIAS - _MANTISSA_BITS),
        )
    return out


def _prepare(conn: sa.Connection) -> None:
    if conn.dialect.name in {"mysql", "mariadb"}:
        conn.execute(sa.text("SET SESSION group_concat_max_len = 67108864"))


# The tables whose primary key (product, day) SQLite can skip-scan for a range of days —
# once it has their statistics. Without them it reads the whole table: two years of older
# history doubled the 10,000-product check's CPU (bench/health_bench.py --older-days 730).
_PLANNED_TABLES = ("sales", "predictions")
_ANALYSIS_LIMIT = 1000  # rows an index ANALYZE samples: ~0.15 s on 8.5M rows, same plans


def _sqlite_statistics(conn: sa.Connection) -> bool:
    """SQLite: whether the planner has statistics of sales and predictions, gathered here
    (an approximate ANALYZE, `_ANALYSIS_LIMIT`) when missing and the tables have rows.
    Other databases keep their own (InnoDB's persistent statistics): True."""
    if conn.dialect.name != "sqlite":
        return True

    def analyzed() -> set[str]:
        if not conn.execute(
            sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'")
        ).first():
            return set()
        return set(conn.execute(sa.text("SELECT DISTINCT tbl FROM sqlite_stat1")).scalars())

    if set(_PLANNED_TABLES) <= analyzed():
        return True
    try:
        conn.execute(sa.text(f"PRAGMA analysis_limit = {_ANALYSIS_LIMIT}"))
        for table in _PLANNED_TABLES:
            conn.execute(sa.text(f"ANALYZE {table}"))
        conn.commit()
    except sa.exc.OperationalError as exc:  # read-only file, locked by a writer: plan without
        conn.rollback()
        log.warning("SQLite statistics not gathered (%s): the check reads whole tables", exc)
        return False
    return set(_PLANNED_TABLES) <= analyzed()


def _by_product(query: sa.Select) -> sa.Select:
    """`query` on predictions read along the primary key (product, day) on MySQL/MariaDB:
    with years of older forecasts their planner takes the date index for a range of days
    and fetches each row by it, then sorts — 57 s against 8.4 s for the primary-key scan
    with two years of older forecasts of 10,000 products (past the statement timeout)."""
    hint = "IGNORE INDEX (ix_predictions_target_date)"
    return query.with_hint(predictions, hint, "mysql").with_hint(predictions, hint, "mariadb")


def _days_between(
    column: sa.ColumnElement, first: date, last: date, dialect: str, planned: bool
) -> sa.ColumnElement:
    """`first <= column <= last`. On SQLite without statistics (`_sqlite_statistics`) the
    dates are compared as text (as SQLite compares the stored dates anyway): its planner
    would otherwise take the date index and fetch each row by rowid (2-4x slower than the
    primary-key scan); with them it skip-scans the primary key."""
    if dialect == "sqlite" and not planned:
        return sa.cast(column, sa.String).between(first.isoformat(), last.isoformat())
    return column.between(first, last)


def _parse_groups(
    rows: list, columns: list[str], *, joined: bool = False, exact: Sequence[str] = ()
) -> tuple[list[str], np.ndarray, pd.DataFrame]:
    """(product ids, row counts, parsed values) from rows of (product_id, count, text, ...).

    Either one GROUP_CONCAT text a column, in the order of `columns` (the aggregates of
    one query see the rows in the same order), or, `joined`, one text of entries
    "value:value" (`_entries`). The columns named in `exact` come as `_exact`'s two
    integers "m:e" (MySQL). A value that is not a finite number becomes NaN, and the
    frame's boolean column `bad_<name>` marks it (an empty value is not bad).
    """
    ids = [r[0] for r in rows]
    counts = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    expected = int(counts.sum())
    groups = [columns] if joined else [[c] for c in columns]
    frame = pd.DataFrame(index=pd.RangeIndex(expected))
    for k, names in enumerate(groups, start=2):
        parsed = _parse_text([r[k] for r in rows], names, expected, exact)
        for name, (number, bad) in parsed.items():
            frame[name] = number
            if name != "day":
                frame[f"bad_{name}"] = bad
    return ids, counts, frame


def _parse_text(
    texts: list[str], names: list[str], expected: int, exact: Sequence[str] = ()
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per name: (numbers, bad) of the comma-separated entries of `texts`, in order, each
    entry the ":"-separated values of `names` (two, mantissa and exponent, for a name in
    `exact`: `_exact`).

    Plain finite numbers only are read in one pass of pandas' C reader; an empty, NaN,
    infinite or unreadable value anywhere (rare: bad data) reads the text again as text.
    """
    if not expected:
        return {n: (np.empty(0), np.zeros(0, bool)) for n in names}
    # Bytes, not a StringIO: a StringIO of a str holds 4 bytes a character (80 MB for the
    # 20 MB of 1.2 million forecasts' text), and the C reader reads bytes without decoding.
    # The entries end in "," (GROUP_CONCAT's separator): no copy with "\n" for ",".
    text = ",".join(texts).encode()
    fields = [f for n in names for f in ((n, f"{n}:exp") if n in exact else (n,))]
    options = {"sep": ":", "header": None, "names": fields, "engine": "c", "lineterminator": ","}
    try:
        # The mantissas as int64: up to 2**55, past a double's exact integers.
        dtype = {f: np.int64 if f in exact or f.endswith(":exp") else float for f in fields}
        fast = pd.read_csv(io.BytesIO(text), dtype=dtype, **options)
        if len(fast) == expected:
            out = {}
            for n in names:
                if n in exact:
                    number = _from_exact(fast[n].to_numpy(), fast[f"{n}:exp"].to_numpy())
                else:
                    number = fast[n].to_numpy(np.float64, copy=True)
                out[n] = (number, np.zeros(expected, bool))
            if all(np.isfinite(number).all() for number, _ in out.values()):
                return out
    except (ValueError, OverflowError):
        pass
    raw = pd.read_csv(
        io.BytesIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False, **options
    )
    if len(raw) != expected:
        raise RuntimeError(
            f"read {len(raw)} values but the database counted {expected}: "
            "GROUP_CONCAT was truncated (raise group_concat_max_len)"
        )
    out = {}
    for name in names:
        text_values = raw[name].fillna("")
        if name in exact:
            number = _exact_texts(text_values.tolist(), raw[f"{name}:exp"].fillna("").tolist())
        else:
            number = pd.to_numeric(text_values.replace("", np.nan), errors="coerce").to_numpy(
                float, copy=True
            )
        bad = (text_values.to_numpy() != "") & ~np.isfinite(number)
        number[bad] = np.nan
        out[name] = (number, bad)
    return out


def _exact_texts(firsts: list[str], seconds: list[str]) -> np.ndarray:
    """`_from_exact` of texts, one by one (the rare read with an empty value); NaN where
    the two are not integers."""
    out = np.full(len(firsts), np.nan)
    for i, (a, b) in enumerate(zip(firsts, seconds, strict=True)):
        with contextlib.suppress(ValueError, OverflowError):
            first, second = int(a), int(b)
            if second >= 0:
                out[i] = (first + math.ldexp(second, -_FRACTION_BITS)) * 2.0**-_FIXED_POINT_BITS
            else:
                out[i] = math.ldexp(first, second + _EXPONENT_BIAS - _MANTISSA_BITS)
    return out


def _count_bad(ids: list[str], counts: np.ndarray, bad: np.ndarray, table: str) -> list:
    if not bad.any():
        return []
    per = np.bincount(np.repeat(np.arange(len(ids)), counts)[bad], minlength=len(ids))
    return [(ids[i], table, int(per[i])) for i in np.flatnonzero(per)]


def _entries(exprs: list[sa.ColumnElement], dialect: str) -> list[sa.ColumnElement]:
    """The GROUP_CONCAT columns of numbers `exprs` (see `_parse_groups`).

    SQLite: one aggregate a number, which SQLite turns into text itself (a REAL with 15
    significant digits, as CAST would): concatenating each row's values first costs it
    more. MySQL: one aggregate of "value:value" entries, the cheaper form there.
    """
    return [sa.func.group_concat(e) for e in _entry_texts(exprs, dialect)]


def _entry_texts(exprs: list[sa.ColumnElement], dialect: str) -> list[sa.ColumnElement]:
    """What `_entries` aggregates: SQLite the numbers themselves, MySQL one text
    "value:value" a row."""
    if dialect == "sqlite":
        return list(exprs)
    return [_joined(*exprs)]


def _units(column: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    """A sales figure. SQLite formats a REAL slowly; a whole number (units sold usually
    are) is given as an integer, whose text is much cheaper ("7" for 7.0, the same
    number). Infinities and text that is no number stay as they are."""
    if dialect != "sqlite":
        return column
    whole = sa.cast(column, sa.Integer)
    return sa.case((column == whole, whole), else_=column)


def _read_sales(
    conn: sa.Connection, hist_start: date, as_of: date
) -> tuple[list[str], np.ndarray, pd.DataFrame]:
    """(product ids, row counts, parsed day/units) of the sales from `hist_start` to
    `as_of`: one aggregate a product, in product order, each product's days in order."""
    dialect = conn.dialect.name
    s = sales
    rows = conn.execute(
        sa.select(
            s.c.product_id,
            sa.func.count(),
            *_entries(
                [_day_offset(s.c.sale_date, hist_start, dialect), _units(s.c.units_sold, dialect)],
                dialect,
            ),
        )
        .where(s.c.sale_date.between(hist_start, as_of))
        .group_by(s.c.product_id)
        .order_by(s.c.product_id)
    ).all()
    return _parse_groups(rows, ["day", "units"], joined=dialect != "sqlite")


def _fetch_forecasts(
    conn: sa.Connection,
    hist_start: date,
    first: date,
    last: date,
    planned: bool,
    window_start: date | None = None,
    products: tuple[str | None, str | None] = (None, None),
) -> list:
    """The forecasts for the days `first`..`last`, one row a product: (id, count, its
    days and values as text (`_entries`), the model versions that made them — one
    DISTINCT set a product, two (the days before `window_start`, then the days from it)
    when the span has days on both sides of `window_start` — then, when the span holds
    the window (`window_start` given), the served intervals of its window days: their
    count and their days, P10 and P90 as text (`_band_entries`; NULL text and count 0:
    none), rows without both bounds left out. Only the products from `products[0]` (if
    any) up to before `products[1]` (if any). Parsed by the caller (`_parse_groups`,
    `_match_bands`), one read at a time (the texts are tens of MB). `planned`: see
    `_days_between`.

    One read of the rows for all they give: each read of predictions scans the table's
    primary key (`_by_product`), 0.2-0.3 s of MariaDB's CPU for 1.2 million rows even
    when it sends nothing (the window's intervals read on their own re-scanned it).
    """
    dialect = conn.dialect.name
    p = predictions
    dates = _days_between(p.c.target_date, first, last, dialect, planned)
    if products[0] is not None:
        dates = sa.and_(p.c.product_id >= products[0], dates)
    if products[1] is not None:
        dates = sa.and_(p.c.product_id < products[1], dates)
    columns: list[sa.ColumnElement] = [
        p.c.product_id,
        sa.func.count(),
        *_entries(
            [
                _day_offset(p.c.target_date, hist_start, dialect),
                _exact(p.c.predicted_units, dialect),
            ],
            dialect,
        ),
    ]
    if window_start is not None and first < window_start:
        before = p.c.target_date < window_start
        columns += [
            sa.func.group_concat(sa.case((before, p.c.model_version)).distinct()),
            sa.func.group_concat(sa.case((~before, p.c.model_version)).distinct()),
        ]
    else:
        columns.append(sa.func.group_concat(p.c.model_version.distinct()))
    if window_start is not None:
        banded = sa.and_(
            p.c.target_date >= window_start,
            p.c.predicted_p10.is_not(None),
            p.c.predicted_p90.is_not(None),
        )
        columns += [
            sa.func.count(sa.case((banded, 1))),
            *_band_entries(banded, hist_start, dialect),
        ]
    return conn.execute(
        _by_product(sa.select(*columns).where(dates).group_by(p.c.product_id))
    ).all()


def _concurrent(engine: sa.Engine) -> bool:
    """Whether reads may run on other connections of `engine` at the same time (not with
    a pool of one shared connection: SQLite in memory, a test's StaticPool)."""
    return not isinstance(engine.pool, sa.pool.StaticPool | sa.pool.SingletonThreadPool)


class _Reads:
    """Runs read steps on their own pooled connections in worker threads, or — when the
    engine cannot (`_concurrent`) — in order on the caller's connection when asked for
    their results. The databases do the aggregation and the drivers wait for it outside
    the GIL (sqlite3 steps, a MySQL socket), so on two cores the reads overlap."""

    def __init__(self, engine: sa.Engine, conn: sa.Connection, workers: int) -> None:
        self._engine, self._conn = engine, conn
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="health-read")
            if workers > 0 and _concurrent(engine)
            else None
        )

    @property
    def concurrent(self) -> bool:
        """Whether the steps run on their own connections at the same time."""
        return self._pool is not None

    def submit(self, step: Callable[..., Any], *args: Any) -> Callable[[], Any]:
        """Start `step(conn, *args)`; returns the function that waits for its result."""
        if self._pool is None:
            return lambda: step(self._conn, *args)
        future = self._pool.submit(self._on_own_connection, step, *args)
        return future.result

    def _on_own_connection(self, step: Callable[..., Any], *args: Any) -> Any:
        with self._engine.connect() as conn:
            _prepare(conn)
            return step(conn, *args)

    def close(self) -> None:
        """Wait for the workers (a failed read's siblings finish before it is raised)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _newest_day(window_start: date, as_of: date) -> sa.ScalarSelect:
    """The newest day of the window with a forecast (a scalar subquery)."""
    return (
        sa.select(sa.func.max(predictions.c.target_date))
        .where(predictions.c.target_date.between(window_start, as_of))
        .scalar_subquery()
    )


def _product_pivot(conn: sa.Connection, window_start: date, as_of: date) -> str | None:
    """A product id that splits the products with forecasts about in half (None: fewer
    than two): the middle one of those forecast for the window's newest day, read from
    the date index alone (it holds the primary key: no row is read). Any id splits the
    reads correctly (each half a range of the primary key); this one keeps them even.
    The products' distinct ids by a loose index scan cost MariaDB 0.03-0.12 s of CPU
    at 10,000 products before the forecasts' reads could start; this 0.01 s or less."""
    p = predictions
    newest_day = _newest_day(window_start, as_of)
    ids = (
        conn.execute(
            sa.select(p.c.product_id).where(p.c.target_date == newest_day).order_by(p.c.product_id)
        )
        .scalars()
        .all()
    )
    return ids[len(ids) // 2] if len(ids) >= 2 else None


def _current_version(
    conn: sa.Connection, versions: set[str], window_start: date, as_of: date
) -> str | None:
    """The current model: the one that forecast the newest day of the window (the
    newest made forecast of that day). When every forecast of the window was made by one
    version (`versions`, read with them), that one, without a query: the query looks up
    each of that day's rows (10,000 at 10,000 products)."""
    if len(versions) == 1:
        return next(iter(versions))
    return conn.execute(
        sa.select(predictions.c.model_version)
        .where(predictions.c.target_date == _newest_day(window_start, as_of))
        .order_by(predictions.c.created_at.desc(), predictions.c.model_version.desc())
        .limit(1)
    ).scalar()


_PARSE_PRODUCTS = 2500  # products whose forecasts' text is parsed at once (`_read`)


def _read(
    reads: _Reads,
    conn: sa.Connection,
    hist_start: date,
    ref_start: date,
    window_start: date,
    as_of: date,
    planned: bool,
):
    """The sales (on `conn`) and, at the same time (`reads`), the forecasts of the
    reference's days and of the window's, matched by (product, day) in numpy, and the
    rows of the window's served intervals (`_fetch_forecasts`, for `_match_bands`).

    Cheaper than joining in the database on SQLite as on MySQL (10,000 products x 60
    days: the join's 600,000 index look-ups and the per-row text of both numbers cost
    more than two sequential reads). MySQL reads the forecasts of all those days at once
    (each read scans the primary key: `_fetch_forecasts`); SQLite skip-scans the days
    asked for, so the reference's days and the window's are two reads that run at the
    same time.
    """
    joined = conn.dialect.name != "sqlite"
    if joined:
        # All the days at once, in two halves of the products when the reads run at the
        # same time (each a range of the primary key: no row is scanned twice).
        pivot = _product_pivot(conn, window_start, as_of) if reads.concurrent else None
        ranges = [(None, None)] if pivot is None else [(None, pivot), (pivot, None)]
        spans = [(ref_start, as_of, lo, hi) for lo, hi in ranges]
    else:
        spans = [
            (ref_start, window_start - timedelta(days=1), None, None),
            (window_start, as_of, None, None),
        ]
    pending = [
        reads.submit(
            _fetch_forecasts,
            hist_start,
            first,
            last,
            planned,
            window_start if last == as_of else None,
            (lo, hi),
        )
        for first, last, lo, hi in spans
    ]
    ids, counts, frame = _read_sales(conn, hist_start, as_of)
    n_days = (as_of - hist_start).days + 1
    dense = np.full((len(ids), n_days), np.nan)
    bad_pred = np.zeros(len(ids), np.int64)
    versions: set[str] = set()  # those that forecast the window
    reference: list[frozenset[str]] = [frozenset()] * len(ids)
    index = pd.Index(ids)
    band_rows: list = []
    made_at = 3 if joined else 4  # the first column after the entries (`_fetch_forecasts`)
    for first, last, _, _ in spans:
        rows = pending.pop(0)()  # the list held the only reference to the waiting future
        codes = index.get_indexer([r[0] for r in rows])
        # The versions that made the reference's days, the window's, or both (in that
        # order), then with the window its intervals' count and texts.
        has_before, has_window = first < window_start, last == as_of
        at = made_at + has_before
        if has_before:
            for i, r in zip(codes, rows, strict=True):
                if i >= 0:
                    reference[i] = frozenset(r[made_at].split(",")) if r[made_at] else frozenset()
        if has_window:
            for r in rows:
                if r[at]:
                    versions.update(r[at].split(","))
            band_rows += [(r[0], *r[at + 1 :]) for r in rows if r[at + 1]]
        # A chunk of products at a time, each parsed chunk's rows let go: the parse's
        # copies of the whole text came on top of it (tens of MB at 10,000 products x
        # 120 days).
        for start in range(0, len(codes), _PARSE_PRODUCTS):
            chunk = rows[:_PARSE_PRODUCTS]
            del rows[:_PARSE_PRODUCTS]
            _, part_counts, part = _parse_groups(
                chunk, ["day", "pred"], joined=joined, exact=("pred",) if joined else ()
            )
            del chunk
            pcode = np.repeat(codes[start : start + _PARSE_PRODUCTS], part_counts)
            known = pcode >= 0  # forecasts of products without sales cannot be judged
            pday = part["day"].to_numpy(np.int64)
            dense[pcode[known], pday[known]] = part["pred"].to_numpy(np.float64)[known]
            np.add.at(bad_pred, pcode[known & part["bad_pred"].to_numpy(bool)], 1)
            del part
    codes = np.repeat(np.arange(len(ids)), counts)
    frame["pred"] = dense[codes, frame["day"].to_numpy(np.int64)]
    return ids, counts, frame, bad_pred, versions, reference, band_rows


_BAND_SCALE = 10_000.0  # SQLite reads the interval bounds to 1e-4 units


def _band_entries(
    banded: sa.ColumnElement, hist_start: date, dialect: str
) -> list[sa.ColumnElement]:
    """The GROUP_CONCAT columns (`_entries`) of the day, P10 and P90 of the rows where
    `banded` holds (GROUP_CONCAT skips the others' NULL). Parsed by `_match_bands`."""
    p = predictions
    bounds = [p.c.predicted_p10, p.c.predicted_p90]
    values = [_exact(b, dialect) for b in bounds]
    if dialect == "sqlite":
        # The bounds in 1e-4 units as integers, whose text SQLite writes far faster than a
        # REAL's.
        values = [sa.cast(sa.func.round(b * _BAND_SCALE), sa.Integer) for b in bounds]
    return [
        sa.func.group_concat(sa.case((banded, entry)))
        for entry in _entry_texts(
            [_day_offset(p.c.target_date, hist_start, dialect), *values], dialect
        )
    ]


def _match_bands(
    rows: list,
    dialect: str,
    ids: list[str],
    codes: np.ndarray,
    day: np.ndarray,
    n_days: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """`_fetch_forecasts`' P10/P90 (the rows of (id, count, texts) with any) matched to the sales rows (`codes`, `day`); None when no
    forecast of the window has an interval."""
    if not rows:
        return None
    joined = dialect != "sqlite"
    got_ids, counts, frame = _parse_groups(
        rows, ["day", "lo", "hi"], joined=joined, exact=("lo", "hi") if joined else ()
    )
    if dialect == "sqlite":
        frame["lo"] /= _BAND_SCALE
        frame["hi"] /= _BAND_SCALE
    dense = np.full((2, len(ids), n_days), np.nan)
    code = np.repeat(pd.Index(ids).get_indexer(got_ids), counts)
    known = code >= 0
    pday = frame["day"].to_numpy(np.int64)[known]
    dense[0, code[known], pday] = frame["lo"].to_numpy(np.float64)[known]
    dense[1, code[known], pday] = frame["hi"].to_numpy(np.float64)[known]
    return dense[0, codes, day], dense[1, codes, day]


def load_window(
    engine: sa.Engine, as_of: date, window_days: int, reference_days: int | None = None
) -> WindowData:
    """Read the sales of the history and the window, each with its forecast if any.

    Never a query per product: the sales and their forecasts (aggregated per product,
    with the model versions that forecast the window), the served intervals of the
    window, the version that forecast the window's newest day, and — only when no sales
    were read — the newest sales day. Each table is read once and the rows are matched
    in numpy (`_read`); the forecasts with the window's intervals are read on their own
    connections while the sales are (`_Reads`; on SQLite the reference's days and the
    window's each on one).
    """
    if window_days < 1:
        raise ValueError(f"window_days must be >= 1, got {window_days}")
    hist = history_days(window_days, reference_days)
    window_start = as_of - timedelta(days=window_days - 1)
    hist_start = window_start - timedelta(days=hist)
    ref_start = window_start - timedelta(days=reference_days or window_days)
    n_days = (as_of - hist_start).days + 1
    with engine.connect() as conn:
        _prepare(conn)
        planned = _sqlite_statistics(conn)
        reads = _Reads(engine, conn, READ_WORKERS)
        try:
            ids, counts, frame, bad_pred, versions, reference, bands = _read(
                reads, conn, hist_start, ref_start, window_start, as_of, planned
            )
        finally:
            reads.close()
        bad = _count_bad(ids, counts, frame["bad_units"].to_numpy(bool), "sales")
        bad += [(ids[i], "predictions", int(bad_pred[i])) for i in np.flatnonzero(bad_pred)]
        # A sale without a usable number is no sale: leave the row out.
        keep = ~frame["bad_units"].to_numpy(bool)
        codes = np.repeat(np.arange(len(ids), dtype=np.int64), counts)
        if not keep.all():
            frame, codes = frame[keep].reset_index(drop=True), codes[keep]
        current = _current_version(conn, versions, window_start, as_of)
        day = frame["day"].to_numpy(np.int64)
        bands = _match_bands(bands, conn.dialect.name, ids, codes, day, n_days)
        if len(day):
            last_sale: date | None = hist_start + timedelta(days=int(day.max()))
        else:
            last_sale = conn.execute(
                sa.select(sa.func.max(sales.c.sale_date)).where(sales.c.sale_date <= as_of)
            ).scalar()
    _release_freed_memory()
    return WindowData(
        as_of=as_of,
        window_days=window_days,
        history_days=hist,
        products=np.array(ids, dtype=object),
        codes=codes,
        day=day,
        units=frame["units"].to_numpy(np.float64),
        predicted=frame["pred"].to_numpy(np.float64),
        model_versions=tuple(sorted(versions)),
        current_version=current,
        last_sale_date=last_sale,
        reference_versions=tuple(reference),
        bad_values=tuple(bad),
        reference_days=reference_days,
        lower=None if bands is None else bands[0],
        upper=None if bands is None else bands[1],
    )


def _release_freed_memory() -> None:
    """Hand the heap's free memory back to the OS (glibc's `malloc_trim`; elsewhere
    nothing). The reads' texts and parse buffers (about 80 MB at 10,000 products x 120
    days, much of it in the worker threads' arenas) are freed but stay in the process,
    and the statistics' peak came on top of them: peak RSS 381 -> 356 MB with intervals
    on MariaDB (bench/health_bench.py --intervals); the call takes milliseconds."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None  # glibc's malloc_trim once looked up; False where there is none


def load_residuals(
    engine: sa.Engine, model_version: str, products: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The holdout errors of `model_version` as (product codes into `products`, errors).

    One query; products not in `products` are dropped.
    """
    r = model_residuals
    query = (
        sa.select(r.c.product_id, sa.func.count(), sa.func.group_concat(_as_text(r.c.error)))
        .where(r.c.model_version == model_version)
        .group_by(r.c.product_id)
    )
    with engine.connect() as conn:
        _prepare(conn)
        ids, counts, frame = _parse_groups(conn.execute(query).all(), ["error"])
    index = pd.Index(products).get_indexer(ids)
    codes = np.repeat(index, counts)
    keep = (codes >= 0) & ~frame["bad_error"].to_numpy(bool)
    return codes[keep].astype(np.int64), frame["error"].to_numpy(np.float64)[keep]


def window_from_frames(
    as_of: date,
    window_days: int,
    sales_frame: pd.DataFrame,
    predictions_frame: pd.DataFrame | None = None,
    *,
    current_version: str | None = None,
    last_sale_date: date | None = None,
    reference_days: int | None = None,
    episodes: pd.DataFrame | None = None,
) -> WindowData:
    """Build `WindowData` from plain frames, as `load_window` reads it from the database.

    THE constructor for any other backend (tests, benchmarks, a BigQuery or Beam reader):
    `sales_frame` has product_id, sale_date, units_sold; `predictions_frame` has
    product_id, target_date, predicted_units and optionally model_version and the
    served interval, predicted_p10 and predicted_p90 (window days only). With
    model_version, the versions that forecast the window, the current model (the one
    that forecast the window's newest day) and each product's reference-window versions
    are derived as `load_window` derives them. A reader that gives only a batch of the
    products passes the window's global facts, `current_version` and `last_sale_date`,
    so every batch judges against the same model (`check.product_phase` is then
    partition-invariant); otherwise they are taken from the frames. Issue 23:
    `reference_days` (the days before the window whose served errors are the reference;
    None: the window's length) and `episodes` (the model's open drift episodes:
    product_id, since, checks — `episodes.load_episodes`) as `HealthService` passes them.
    """
    hist = history_days(window_days, reference_days)
    window_start = as_of - timedelta(days=window_days - 1)
    hist_start = window_start - timedelta(days=hist)
    ref_start = window_start - timedelta(days=reference_days or window_days)
    frame = sales_frame.copy()
    frame["sale_date"] = pd.to_datetime(frame["sale_date"])
    frame = frame[
        (frame["sale_date"] >= pd.Timestamp(hist_start))
        & (frame["sale_date"] <= pd.Timestamp(as_of))
    ]
    versions: tuple[str, ...] = ()
    current = None
    ref_versions: dict[object, frozenset[str]] | None = None
    if predictions_frame is not None and len(predictions_frame):
        preds = predictions_frame.copy()
        preds["target_date"] = pd.to_datetime(preds["target_date"])
        preds = preds[
            (preds["target_date"] >= pd.Timestamp(ref_start))
            & (preds["target_date"] <= pd.Timestamp(as_of))
        ]
        in_window = preds[preds["target_date"] >= pd.Timestamp(window_start)]
        if "model_version" in preds and len(in_window):
            versions = tuple(sorted(in_window["model_version"].astype(str).unique()))
            latest = in_window.sort_values("target_date", kind="stable")["model_version"].iloc[-1]
            current = str(latest)
        if "model_version" in preds:
            before = preds[preds["target_date"] < pd.Timestamp(window_start)]
            ref_versions = {
                pid: frozenset(map(str, group.unique()))
                for pid, group in before.groupby("product_id")["model_version"]
            }
        bands = [c for c in ("predicted_p10", "predicted_p90") if c in preds]
        frame = frame.merge(
            preds[["product_id", "target_date", "predicted_units", *bands]],
            left_on=["product_id", "sale_date"],
            right_on=["product_id", "target_date"],
            how="left",
        )
    else:
        frame["predicted_units"] = np.nan
    frame = frame.sort_values(["product_id", "sale_date"])
    codes, products = pd.factorize(frame["product_id"], sort=True)
    day = ((frame["sale_date"] - pd.Timestamp(hist_start)).dt.days).to_numpy(np.int64)
    last = hist_start + timedelta(days=int(day.max())) if len(day) else None
    reference = None
    if ref_versions is not None:
        reference = tuple(ref_versions.get(p, frozenset()) for p in products)
    lower = upper = None
    if {"predicted_p10", "predicted_p90"} <= set(frame.columns):
        in_win = (frame["sale_date"] >= pd.Timestamp(window_start)).to_numpy()
        lower = np.where(in_win, frame["predicted_p10"].to_numpy(np.float64), np.nan)
        upper = np.where(in_win, frame["predicted_p90"].to_numpy(np.float64), np.nan)
        if np.isnan(lower).all() or np.isnan(upper).all():
            lower = upper = None
    data = WindowData(
        as_of=as_of,
        window_days=window_days,
        history_days=hist,
        products=np.asarray(products, dtype=object),
        codes=codes.astype(np.int64),
        day=day,
        units=frame["units_sold"].to_numpy(np.float64),
        predicted=frame["predicted_units"].to_numpy(np.float64),
        model_versions=versions,
        current_version=current_version or current,
        last_sale_date=last_sale_date or last,
        reference_versions=reference,
        reference_days=reference_days,
        lower=lower,
        upper=upper,
    )
    return data if episodes is None else with_episodes(data, episodes)

"""The health check's data: the window's sales and forecasts, read in one query per table.

Days are counted from `hist_start`, the first day read: the history before the window
(at least four weeks, and at least the reference window), then the window itself.

The (product, day) rows are aggregated per product in the database (GROUP_CONCAT of
"day:units:predicted") and parsed by pandas' C reader: pymysql decodes rows in pure
Python, and 600,000 rows one by one take longer than the whole check may (3 s). Numbers
come back as text with 15 (SQLite) or 17 (MySQL) significant digits.

A value that is not a finite number (SQLite stores `inf` or the text `'abc'` in a REAL
column) is bad data (issue 14): a sale with a bad `units_sold` is left out, a bad
forecast counts as no forecast, and `WindowData.bad_values` says which product had how
many, so the check reports them instead of failing or returning `Infinity`.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.db.schema import model_residuals, predictions, sales

MIN_HISTORY_DAYS = 28  # four weeks of history for the seasonal-naive scale
# Text of plain finite numbers only; anything else (inf, NaN, letters) takes the slow path.
_NOT_PLAIN = re.compile(r"[^0-9eE+\-.:\n]")


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


def history_days(window_days: int) -> int:
    """How many days before the window are read: the reference window, at least 4 weeks."""
    return max(window_days, MIN_HISTORY_DAYS)


def _day_offset(column: sa.ColumnElement, start: date, dialect: str) -> sa.ColumnElement:
    if dialect == "sqlite":
        days = sa.func.julianday(column) - sa.func.julianday(sa.literal(start.isoformat()))
        return sa.cast(sa.func.round(days), sa.Integer)
    return sa.func.datediff(column, sa.literal(start, sa.Date))


def _as_text(expr: sa.ColumnElement) -> sa.ColumnElement:
    return sa.cast(expr, sa.String)


def _prepare(conn: sa.Connection) -> None:
    if conn.dialect.name in {"mysql", "mariadb"}:
        conn.execute(sa.text("SET SESSION group_concat_max_len = 67108864"))


def _parse_groups(rows: list, columns: list[str]) -> tuple[list[str], np.ndarray, pd.DataFrame]:
    """(product ids, row counts, parsed values) from rows of (product_id, count, text).

    A value that is not a finite number becomes NaN, and the frame's boolean column
    `bad_<name>` marks it (an empty value, a missing forecast, is not bad).
    """
    ids = [r[0] for r in rows]
    counts = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    values = [c for c in columns if c != "day"]
    if not rows:
        frame = pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
        for c in values:
            frame[f"bad_{c}"] = pd.Series(dtype=bool)
        return ids, counts, frame
    text = "\n".join(r[2] for r in rows).replace(",", "\n")
    frame = None
    if not _NOT_PLAIN.search(text):
        try:
            frame = pd.read_csv(
                io.StringIO(text), sep=":", header=None, names=columns, dtype=float, engine="c"
            )
        except ValueError:
            frame = None
    if frame is not None:
        for c in values:
            frame[f"bad_{c}"] = False
    else:
        raw = pd.read_csv(
            io.StringIO(text),
            sep=":",
            header=None,
            names=columns,
            dtype=str,
            keep_default_na=False,
            engine="c",
        )
        frame = pd.DataFrame(index=raw.index)
        if "day" in columns:
            frame["day"] = pd.to_numeric(raw["day"], errors="coerce")
        for c in values:
            number = pd.to_numeric(raw[c].replace("", np.nan), errors="coerce").to_numpy(
                float, copy=True
            )
            bad = (raw[c].to_numpy() != "") & ~np.isfinite(number)
            number[bad] = np.nan
            frame[c] = number
            frame[f"bad_{c}"] = bad
    if len(frame) != counts.sum():
        raise RuntimeError(
            f"read {len(frame)} values but the database counted {counts.sum()}: "
            "GROUP_CONCAT was truncated (raise group_concat_max_len)"
        )
    return ids, counts, frame


def _count_bad(ids: list[str], counts: np.ndarray, bad: np.ndarray, table: str) -> list:
    if not bad.any():
        return []
    per = np.bincount(np.repeat(np.arange(len(ids)), counts)[bad], minlength=len(ids))
    return [(ids[i], table, int(per[i])) for i in np.flatnonzero(per)]


def _joined(
    conn: sa.Connection, hist_start: date, ref_start: date, window_start: date, as_of: date
):
    """SQLite: sales LEFT JOIN predictions, one row a product (the join is cheap there)."""
    s, p = sales.alias("s"), predictions.alias("p")
    entry = (
        _as_text(_day_offset(s.c.sale_date, hist_start, conn.dialect.name))
        + ":"
        + _as_text(s.c.units_sold)
        + ":"
        + sa.func.coalesce(_as_text(p.c.predicted_units), "")
    )
    window_version = sa.case((p.c.target_date >= window_start, p.c.model_version))
    ref_version = sa.case((p.c.target_date < window_start, p.c.model_version))
    query = (
        sa.select(
            s.c.product_id,
            sa.func.count(),
            sa.func.group_concat(entry),
            sa.func.group_concat(window_version.distinct()),
            sa.func.group_concat(ref_version.distinct()),
        )
        .select_from(
            s.outerjoin(
                p,
                sa.and_(
                    p.c.product_id == s.c.product_id,
                    p.c.target_date == s.c.sale_date,
                    p.c.target_date >= ref_start,
                ),
            )
        )
        .where(s.c.sale_date.between(hist_start, as_of))
        .group_by(s.c.product_id)
        .order_by(s.c.product_id)
    )
    rows = conn.execute(query).all()
    ids, counts, frame = _parse_groups(rows, ["day", "units", "pred"])
    versions = {v for r in rows if r[3] for v in r[3].split(",")}
    return ids, counts, frame, versions, [_version_set(r[4]) for r in rows]


def _separate(
    conn: sa.Connection, hist_start: date, ref_start: date, window_start: date, as_of: date
):
    """MySQL: one query per table, matched by (product, day) in numpy (a join costs more)."""
    dialect = conn.dialect.name
    sales_entry = (
        _as_text(_day_offset(sales.c.sale_date, hist_start, dialect))
        + ":"
        + _as_text(sales.c.units_sold)
    )
    rows = conn.execute(
        sa.select(sales.c.product_id, sa.func.count(), sa.func.group_concat(sales_entry))
        .where(sales.c.sale_date.between(hist_start, as_of))
        .group_by(sales.c.product_id)
        .order_by(sales.c.product_id)
    ).all()
    ids, counts, frame = _parse_groups(rows, ["day", "units"])
    p = predictions
    pred_entry = (
        _as_text(_day_offset(p.c.target_date, hist_start, dialect))
        + ":"
        + _as_text(p.c.predicted_units)
    )
    window_version = sa.case((p.c.target_date >= window_start, p.c.model_version))
    ref_version = sa.case((p.c.target_date < window_start, p.c.model_version))
    pred_rows = conn.execute(
        sa.select(
            p.c.product_id,
            sa.func.count(),
            sa.func.group_concat(pred_entry),
            sa.func.group_concat(window_version.distinct()),
            sa.func.group_concat(ref_version.distinct()),
        )
        .where(p.c.target_date.between(ref_start, as_of))
        .group_by(p.c.product_id)
    ).all()
    pred_ids, pred_counts, pred = _parse_groups(pred_rows, ["day", "pred"])
    n_days = (as_of - hist_start).days + 1
    dense = np.full((len(ids), n_days), np.nan)
    pcode = np.repeat(pd.Index(ids).get_indexer(pred_ids), pred_counts)
    known = pcode >= 0  # forecasts of products without sales cannot be judged
    pday = pred["day"].to_numpy(np.int64)
    dense[pcode[known], pday[known]] = pred["pred"].to_numpy(np.float64)[known]
    codes = np.repeat(np.arange(len(ids)), counts)
    frame["pred"] = dense[codes, frame["day"].to_numpy(np.int64)]
    bad_pred = np.zeros(len(ids), np.int64)
    pbad = pred["bad_pred"].to_numpy(bool)
    np.add.at(bad_pred, pcode[known & pbad], 1)
    frame.attrs["bad_pred_per_product"] = bad_pred
    versions = {v for r in pred_rows if r[3] for v in r[3].split(",")}
    reference = [frozenset()] * len(ids)
    for i, r in zip(pd.Index(ids).get_indexer(pred_ids), pred_rows, strict=True):
        if i >= 0:
            reference[i] = _version_set(r[4])
    return ids, counts, frame, versions, reference


def load_window(engine: sa.Engine, as_of: date, window_days: int) -> WindowData:
    """Read the sales of the history and the window, each with its forecast if any.

    Never a query per product: the sales and their forecasts (aggregated per product,
    with the model versions that forecast the window), the version that forecast the
    window's newest day, and — only when no sales were read — the newest sales day.
    SQLite joins the two tables in the database; MySQL reads each table once and the
    rows are matched in numpy, which is faster there.
    """
    if window_days < 1:
        raise ValueError(f"window_days must be >= 1, got {window_days}")
    hist = history_days(window_days)
    window_start = as_of - timedelta(days=window_days - 1)
    hist_start = window_start - timedelta(days=hist)
    ref_start = window_start - timedelta(days=window_days)
    with engine.connect() as conn:
        _prepare(conn)
        read = _joined if conn.dialect.name == "sqlite" else _separate
        ids, counts, frame, versions, reference = read(
            conn, hist_start, ref_start, window_start, as_of
        )
        bad = _count_bad(ids, counts, frame["bad_units"].to_numpy(bool), "sales")
        if "bad_pred" in frame:
            bad += _count_bad(ids, counts, frame["bad_pred"].to_numpy(bool), "predictions")
        else:
            per = frame.attrs.get("bad_pred_per_product", np.zeros(len(ids), np.int64))
            bad += [(ids[i], "predictions", int(per[i])) for i in np.flatnonzero(per)]
        # A sale without a usable number is no sale: leave the row out.
        keep = ~frame["bad_units"].to_numpy(bool)
        codes = np.repeat(np.arange(len(ids), dtype=np.int64), counts)
        if not keep.all():
            frame, codes = frame[keep].reset_index(drop=True), codes[keep]
        # The current model: the one that forecast the newest day of the window.
        newest_day = (
            sa.select(sa.func.max(predictions.c.target_date))
            .where(predictions.c.target_date.between(window_start, as_of))
            .scalar_subquery()
        )
        current = conn.execute(
            sa.select(predictions.c.model_version)
            .where(predictions.c.target_date == newest_day)
            .order_by(predictions.c.created_at.desc(), predictions.c.model_version.desc())
            .limit(1)
        ).scalar()
        day = frame["day"].to_numpy(np.int64)
        if len(day):
            last_sale: date | None = hist_start + timedelta(days=int(day.max()))
        else:
            last_sale = conn.execute(
                sa.select(sa.func.max(sales.c.sale_date)).where(sales.c.sale_date <= as_of)
            ).scalar()
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
    )


def _version_set(text: str | None) -> frozenset[str]:
    return frozenset(text.split(",")) if text else frozenset()


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
) -> WindowData:
    """Build `WindowData` from frames, as `load_window` would read them (tests, benchmarks).

    `sales_frame`: product_id, sale_date, units_sold; `predictions_frame`: product_id,
    target_date, predicted_units and optionally model_version.
    """
    hist = history_days(window_days)
    window_start = as_of - timedelta(days=window_days - 1)
    hist_start = window_start - timedelta(days=hist)
    ref_start = window_start - timedelta(days=window_days)
    frame = sales_frame.copy()
    frame["sale_date"] = pd.to_datetime(frame["sale_date"])
    frame = frame[
        (frame["sale_date"] >= pd.Timestamp(hist_start))
        & (frame["sale_date"] <= pd.Timestamp(as_of))
    ]
    versions: tuple[str, ...] = ()
    current = None
    if predictions_frame is not None and len(predictions_frame):
        preds = predictions_frame.copy()
        preds["target_date"] = pd.to_datetime(preds["target_date"])
        preds = preds[preds["target_date"] >= pd.Timestamp(ref_start)]
        in_window = preds[preds["target_date"] >= pd.Timestamp(window_start)]
        if "model_version" in preds and len(in_window):
            versions = tuple(sorted(in_window["model_version"].unique()))
            latest = in_window.sort_values("target_date")["model_version"].iloc[-1]
            current = str(latest)
        frame = frame.merge(
            preds[["product_id", "target_date", "predicted_units"]],
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
    return WindowData(
        as_of=as_of,
        window_days=window_days,
        history_days=hist,
        products=np.asarray(products, dtype=object),
        codes=codes.astype(np.int64),
        day=day,
        units=frame["units_sold"].to_numpy(np.float64),
        predicted=frame["predicted_units"].to_numpy(np.float64),
        model_versions=versions,
        current_version=current,
        last_sale_date=last,
    )

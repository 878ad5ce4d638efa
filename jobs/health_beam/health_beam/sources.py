"""Where the pipeline reads a batch of products: BigQuery, or a database URL.

A source is a small picklable description (a URL and endpoints); each worker opens its
clients once, in `open()` (called from `DoFn.setup`). Every source gives the same three
things: the window's facts (current model, newest sale), the product ranges of the
batches, and a batch's rows as plain frames — which `window_from_frames` turns into the
batch's `WindowData`, exactly as the in-process check would see those products.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from forecastguard import bigquery as bq
from forecastguard.health.check import needs_holdout
from forecastguard.health.dataflow import CONTROL_SOURCE, with_db_pass
from forecastguard.health.window import WindowData, history_days, window_from_frames

Holdout = tuple[np.ndarray, np.ndarray] | None


@dataclass(frozen=True)
class Window:
    """The dates of one check (`reference_days`: issue 23's longer reference, None: the
    window's length), as `load_window` derives them."""

    as_of: date
    window_days: int
    reference_days: int | None = None

    @property
    def window_start(self) -> date:
        """The first day of the window."""
        return self.as_of - timedelta(days=self.window_days - 1)

    @property
    def hist_start(self) -> date:
        """The first day read (history before the window)."""
        return self.window_start - timedelta(
            days=history_days(self.window_days, self.reference_days)
        )

    @property
    def ref_start(self) -> date:
        """The first day of the reference window."""
        return self.window_start - timedelta(days=self.reference_days or self.window_days)


class Source(Protocol):
    """A place the check's rows come from (see the module docstring)."""

    def facts(self, window: Window) -> bq.WindowFacts:
        """The window's current model and newest sales day."""
        ...

    def plan(self, window: Window, batch_size: int) -> list[tuple[str, str]]:
        """(first, last) product id of each batch, in order."""
        ...

    def read(self, window: Window, products: tuple[str, str], model: str | None) -> bq.BatchFrames:
        """The rows of the products in the range."""
        ...

    def write_products(self, check_id: str, as_of: date, products: pd.DataFrame) -> bool:
        """Keep the check's per-product rows beside the data; False: the control
        database is to store them."""
        ...


@dataclass
class BigQuerySource:
    """Tables in a BigQuery dataset (`bigquery://PROJECT/DATASET`)."""

    target: bq.BigQueryTarget

    def __post_init__(self) -> None:
        self._client: Any = None
        self._read_client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"target": self.target}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.target = state["target"]
        self.__post_init__()

    def open(self) -> None:
        """Create the clients (once per worker)."""
        if self._client is None:
            self._client = self.target.client()
            self._read_client = self.target.read_client()

    def facts(self, window: Window) -> bq.WindowFacts:
        """See `Source.facts`."""
        self.open()
        return bq.window_facts(self._client, self.target, window.as_of, window.window_days)

    def plan(self, window: Window, batch_size: int) -> list[tuple[str, str]]:
        """See `Source.plan`."""
        self.open()
        return bq.product_ranges(
            self._client, self.target, window.hist_start, window.as_of, batch_size
        )

    def write_products(self, check_id: str, as_of: date, products: pd.DataFrame) -> bool:
        """Load the check's per-product rows into `health_check_products` (one load job)."""
        self.open()
        rows = bq.product_rows(check_id, as_of, products)
        bq.load_frame(self._client, self.target, "health_check_products", rows)
        return True

    def read(self, window: Window, products: tuple[str, str], model: str | None) -> bq.BatchFrames:
        """See `Source.read` (the Storage Read API)."""
        self.open()
        return bq.read_batch(
            self._read_client,
            self.target,
            products,
            window.hist_start,
            window.as_of,
            window.ref_start,
            model,
        )


@dataclass
class SqlSource:
    """The control database's own tables (a SQLAlchemy URL): the small installation."""

    url: str
    # url "cloudsql" (forecastguard.health.dataflow.CONTROL_SOURCE): the control database
    # of these settings (Cloud SQL through the connector), as on Dataflow.
    settings: Any = None

    def __post_init__(self) -> None:
        self._engine: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.url = state["url"]
        self.settings = state.get("settings")
        self.__post_init__()

    def open(self) -> None:
        """Create the engine (once per worker)."""
        if self._engine is None:
            from forecastguard.config import Settings
            from forecastguard.db.engine import make_engine

            if self.url == CONTROL_SOURCE:
                self._engine = make_engine(with_db_pass(self.settings or Settings.from_env()))
            else:
                self._engine = make_engine(Settings.from_env({}, database_url=self.url))

    def facts(self, window: Window) -> bq.WindowFacts:
        """See `Source.facts` (the queries of `load_window`)."""
        import sqlalchemy as sa

        from forecastguard.db.schema import predictions, sales

        self.open()
        p = predictions
        newest = (
            sa.select(sa.func.max(p.c.target_date))
            .where(p.c.target_date.between(window.window_start, window.as_of))
            .scalar_subquery()
        )
        with self._engine.connect() as conn:
            current = conn.execute(
                sa.select(p.c.model_version)
                .where(p.c.target_date == newest)
                .order_by(p.c.created_at.desc(), p.c.model_version.desc())
                .limit(1)
            ).scalar()
            last = conn.execute(
                sa.select(sa.func.max(sales.c.sale_date)).where(sales.c.sale_date <= window.as_of)
            ).scalar()
        return bq.WindowFacts(current, last)

    def plan(self, window: Window, batch_size: int) -> list[tuple[str, str]]:
        """See `Source.plan`."""
        import sqlalchemy as sa

        from forecastguard.db.schema import sales

        self.open()
        with self._engine.connect() as conn:
            ids = conn.execute(
                sa.select(sales.c.product_id)
                .where(sales.c.sale_date.between(window.hist_start, window.as_of))
                .distinct()
                .order_by(sales.c.product_id)
            ).scalars()
            ids = list(ids)
        return [
            (ids[i], ids[min(i + batch_size, len(ids)) - 1]) for i in range(0, len(ids), batch_size)
        ]

    def write_products(self, check_id: str, as_of: date, products: pd.DataFrame) -> bool:
        """False: the control database stores them with the summary (`store_result`)."""
        return False

    def read(self, window: Window, products: tuple[str, str], model: str | None) -> bq.BatchFrames:
        """See `Source.read`."""
        import sqlalchemy as sa

        from forecastguard.db.schema import model_residuals, predictions, sales

        self.open()
        lo, hi = products
        s, p, r = sales, predictions, model_residuals
        with self._engine.connect() as conn:
            sales_rows = conn.execute(
                sa.select(s.c.product_id, s.c.sale_date, s.c.units_sold).where(
                    s.c.product_id.between(lo, hi),
                    s.c.sale_date.between(window.hist_start, window.as_of),
                )
            ).all()
            pred_rows = conn.execute(
                sa.select(
                    p.c.product_id,
                    p.c.target_date,
                    p.c.predicted_units,
                    p.c.model_version,
                    p.c.predicted_p10,
                    p.c.predicted_p90,
                ).where(
                    p.c.product_id.between(lo, hi),
                    p.c.target_date.between(window.ref_start, window.as_of),
                )
            ).all()
            res_rows = []
            if model is not None:
                res_rows = conn.execute(
                    sa.select(r.c.product_id, r.c.target_date, r.c.error)
                    .where(r.c.model_version == model, r.c.product_id.between(lo, hi))
                    .order_by(r.c.product_id, r.c.target_date)
                ).all()
        return bq.BatchFrames(
            pd.DataFrame(sales_rows, columns=["product_id", "sale_date", "units_sold"]),
            pd.DataFrame(
                pred_rows,
                columns=[
                    "product_id",
                    "target_date",
                    "predicted_units",
                    "model_version",
                    "predicted_p10",
                    "predicted_p90",
                ],
            ),
            pd.DataFrame(res_rows, columns=["product_id", "target_date", "error"]),
        )


PARQUET_SCHEME = "parquet://"


@dataclass
class ParquetSource:
    """A folder of Parquet files (`parquet:///path`), the layout bench/scale_bench.py
    writes: sales/, predictions/ (and optionally model_residuals/) sorted by product,
    and products.parquet (the sorted product ids). A product range reads only the row
    groups whose statistics overlap it, as BigQuery's clustering prunes blocks."""

    path: str

    def _dataset(self, name: str) -> Any:
        import pyarrow.dataset as ds

        return ds.dataset(f"{self.path}/{name}", format="parquet")

    def open(self) -> None:
        """Nothing to open: each read scans the files it needs."""

    def facts(self, window: Window) -> bq.WindowFacts:
        """See `Source.facts` (newest forecast of the window, newest sale)."""
        import pyarrow.compute as pc

        as_of = pd.Timestamp(window.as_of)
        dates = self._dataset("sales").to_table(
            columns=["sale_date"], filter=pc.field("sale_date") <= as_of
        )["sale_date"]
        last = pc.max(dates).as_py() if len(dates) else None
        preds = self._dataset("predictions").to_table(
            columns=["target_date", "model_version", "created_at"],
            filter=(pc.field("target_date") >= pd.Timestamp(window.window_start))
            & (pc.field("target_date") <= as_of),
        )
        current = None
        if len(preds):
            frame = preds.to_pandas()
            newest = frame[frame["target_date"] == frame["target_date"].max()]
            order = newest.sort_values(["created_at", "model_version"], ascending=False)
            current = str(order["model_version"].iloc[0])
        return bq.WindowFacts(current, pd.Timestamp(last).date() if last is not None else None)

    def plan(self, window: Window, batch_size: int) -> list[tuple[str, str]]:
        """See `Source.plan` (from products.parquet)."""
        import pyarrow.parquet as pq

        ids = pq.read_table(f"{self.path}/products.parquet")["product_id"].to_pylist()
        ids.sort()
        return [
            (ids[i], ids[min(i + batch_size, len(ids)) - 1]) for i in range(0, len(ids), batch_size)
        ]

    def write_products(self, check_id: str, as_of: date, products: pd.DataFrame) -> bool:
        """Write the per-product rows to health_check_products/<check_id>.parquet."""
        from pathlib import Path

        folder = Path(self.path) / "health_check_products"
        folder.mkdir(parents=True, exist_ok=True)
        bq.product_rows(check_id, as_of, products).to_parquet(folder / f"{check_id}.parquet")
        return True

    def read(self, window: Window, products: tuple[str, str], model: str | None) -> bq.BatchFrames:
        """See `Source.read`."""
        import pyarrow.compute as pc

        ids = (pc.field("product_id") >= products[0]) & (pc.field("product_id") <= products[1])
        as_of = pd.Timestamp(window.as_of)
        sales = self._dataset("sales").to_table(
            filter=ids
            & (pc.field("sale_date") >= pd.Timestamp(window.hist_start))
            & (pc.field("sale_date") <= as_of)
        )
        preds = self._dataset("predictions").to_table(
            filter=ids
            & (pc.field("target_date") >= pd.Timestamp(window.ref_start))
            & (pc.field("target_date") <= as_of)
        )
        residuals = pd.DataFrame(columns=["product_id", "target_date", "error"])
        n_res = 0
        from pathlib import Path

        if model is not None and Path(f"{self.path}/model_residuals").exists():
            table = self._dataset("model_residuals").to_table(
                filter=ids & (pc.field("model_version") == model)
            )
            n_res = table.nbytes
            residuals = table.to_pandas().sort_values(["product_id", "target_date"])
        return bq.BatchFrames(
            sales.to_pandas(),
            preds.to_pandas(),
            residuals.reset_index(drop=True),
            int(sales.nbytes + preds.nbytes + n_res),
        )


def make_source(
    url: str,
    api_endpoint: str | None = None,
    storage_target: str | None = None,
    settings: Any = None,
) -> BigQuerySource | SqlSource | ParquetSource:
    """The source of a `bigquery://PROJECT/DATASET`, a `parquet:///folder`, a
    SQLAlchemy URL, or `cloudsql`: the control database of `settings` (Cloud SQL)."""
    if bq.is_bigquery_url(url):
        return BigQuerySource(bq.BigQueryTarget.from_url(url, api_endpoint, storage_target))
    if url.startswith(PARQUET_SCHEME):
        return ParquetSource(url[len(PARQUET_SCHEME) :])
    return SqlSource(url, settings if url == CONTROL_SOURCE else None)


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)


def batch_window(
    frames: bq.BatchFrames,
    window: Window,
    facts: bq.WindowFacts,
    min_samples: int,
    episodes: pd.DataFrame | None = None,
) -> tuple[WindowData, Holdout]:
    """The batch's `WindowData` (with the window's facts and the model's open drift
    episodes) and its holdout, as the in-process check builds them: a sale that is no
    finite number is left out, a forecast that is none counts as no forecast
    (`load_window`), and the holdout is used only when a product needs it
    (`needs_holdout`)."""
    sales = frames.sales
    units = _numbers(sales["units_sold"])
    sales = sales.assign(units_sold=units)[np.isfinite(units)]
    preds = frames.predictions
    if len(preds):
        predicted = _numbers(preds["predicted_units"])
        preds = preds.assign(predicted_units=predicted)[np.isfinite(predicted)]
        bands = [b for b in ("predicted_p10", "predicted_p90") if b in preds]
        for band in bands:
            preds = preds.assign(**{band: _numbers(preds[band])})
        if bands and preds[bands].isna().all().all():
            preds = preds.drop(columns=bands)
    data = window_from_frames(
        window.as_of,
        window.window_days,
        sales,
        preds,
        current_version=facts.current_version,
        last_sale_date=facts.last_sale_date,
        reference_days=window.reference_days,
        episodes=episodes,
    )
    holdout: Holdout = None
    if data.current_version and needs_holdout(data, min_samples) and len(frames.residuals):
        res = frames.residuals
        codes = pd.Index(data.products).get_indexer(res["product_id"])
        errors = _numbers(res["error"])
        keep = (codes >= 0) & np.isfinite(errors)
        holdout = (codes[keep].astype(np.int64), errors[keep])
    return data, holdout

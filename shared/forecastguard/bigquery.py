"""BigQuery as the data plane at scale (issue 24): the tables, loading frames, and the
batched reads of the health check.

`sales`, `predictions`, `model_residuals` and the per-product results of each check
(`health_check_products`) live in one dataset, each table partitioned by date and
clustered by product (Terraform creates them in production; `ensure_tables` here and in
tests). The summaries, the retrain ledger and the model registry stay in the control
database (SQLite / Cloud SQL).

Reads go through the real clients: small look-ups (the window's facts, the product
ranges of the batches) as queries, the rows themselves through the Storage Read API with
a row restriction on a product range and a date range, which BigQuery prunes by
partition and cluster. Locally and in tests both point at an emulator (`api_endpoint`,
`storage_target`) with anonymous credentials.

Nothing here is imported by the default installation: google-cloud-bigquery and its
Storage client are imported on first use, and are installed in `.venv-beam`
(requirements/beam.txt) and the Beam job's image only.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

SCHEME = "bigquery"

# name: (columns as (name, type, mode), partition column, clustering columns)
TABLES: dict[str, tuple[tuple[tuple[str, str, str], ...], str, tuple[str, ...]]] = {
    "sales": (
        (
            ("product_id", "STRING", "REQUIRED"),
            ("sale_date", "DATE", "REQUIRED"),
            ("units_sold", "FLOAT64", "REQUIRED"),
        ),
        "sale_date",
        ("product_id",),
    ),
    "predictions": (
        (
            ("product_id", "STRING", "REQUIRED"),
            ("target_date", "DATE", "REQUIRED"),
            ("predicted_units", "FLOAT64", "REQUIRED"),
            ("model_version", "STRING", "REQUIRED"),
            ("created_at", "TIMESTAMP", "REQUIRED"),
            ("predicted_p10", "FLOAT64", "NULLABLE"),
            ("predicted_p50", "FLOAT64", "NULLABLE"),
            ("predicted_p90", "FLOAT64", "NULLABLE"),
        ),
        "target_date",
        ("product_id",),
    ),
    "model_residuals": (
        (
            ("model_version", "STRING", "REQUIRED"),
            ("product_id", "STRING", "REQUIRED"),
            ("target_date", "DATE", "REQUIRED"),
            ("error", "FLOAT64", "REQUIRED"),
        ),
        "target_date",
        ("model_version", "product_id"),
    ),
    "health_check_products": (
        (
            ("health_check_id", "STRING", "REQUIRED"),
            ("as_of", "DATE", "REQUIRED"),
            ("product_id", "STRING", "REQUIRED"),
            ("n", "INT64", "REQUIRED"),
            ("rmse", "FLOAT64", "NULLABLE"),
            ("mae", "FLOAT64", "NULLABLE"),
            ("bias", "FLOAT64", "NULLABLE"),
            ("rmsse", "FLOAT64", "NULLABLE"),
            ("ks_pvalue", "FLOAT64", "NULLABLE"),
            ("ks_qvalue", "FLOAT64", "NULLABLE"),
            ("drift", "BOOL", "REQUIRED"),
            ("drift_kind", "STRING", "NULLABLE"),
            ("drift_test", "STRING", "NULLABLE"),
            ("drift_pvalue", "FLOAT64", "NULLABLE"),
            ("drift_qvalue", "FLOAT64", "NULLABLE"),
            ("bias_shift", "FLOAT64", "NULLABLE"),
            ("bias_shift_sd", "FLOAT64", "NULLABLE"),
            ("spread_ratio", "FLOAT64", "NULLABLE"),
            ("reference", "STRING", "NULLABLE"),
        ),
        "as_of",
        ("product_id",),
    ),
}


@dataclass(frozen=True)
class BigQueryTarget:
    """Where the data plane is: a project's dataset, and (emulator) its endpoints."""

    project: str
    dataset: str
    api_endpoint: str | None = None  # REST, e.g. http://127.0.0.1:9050 (None: Google's)
    storage_target: str | None = None  # Storage Read API host:port, plaintext (emulator)

    @classmethod
    def from_url(
        cls, url: str, api_endpoint: str | None = None, storage_target: str | None = None
    ) -> BigQueryTarget:
        """`bigquery://PROJECT/DATASET` (as sqlalchemy-bigquery spells it)."""
        parts = urlparse(url)
        dataset = parts.path.strip("/")
        if parts.scheme != SCHEME or not parts.netloc or not dataset or "/" in dataset:
            raise ValueError(f"not a BigQuery location (bigquery://PROJECT/DATASET): {url!r}")
        return cls(parts.netloc, dataset, api_endpoint, storage_target)

    @property
    def url(self) -> str:
        """The `bigquery://PROJECT/DATASET` form."""
        return f"{SCHEME}://{self.project}/{self.dataset}"

    def table(self, name: str) -> str:
        """The table's id for SQL and the client: PROJECT.DATASET.NAME."""
        return f"{self.project}.{self.dataset}.{name}"

    def client(self) -> Any:
        """A google-cloud-bigquery Client (anonymous against an emulator endpoint)."""
        from google.cloud import bigquery

        if self.api_endpoint is None:
            return bigquery.Client(project=self.project)
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.api_endpoint),
        )

    def read_client(self) -> Any:
        """A BigQuery Storage Read API client (plaintext gRPC to an emulator target)."""
        from google.cloud import bigquery_storage

        if self.storage_target is None:
            return bigquery_storage.BigQueryReadClient()
        import grpc
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
            BigQueryReadGrpcTransport,
        )

        channel = grpc.insecure_channel(self.storage_target)
        return bigquery_storage.BigQueryReadClient(
            transport=BigQueryReadGrpcTransport(channel=channel)
        )


def is_bigquery_url(url: str | None) -> bool:
    """True for a `bigquery://` location."""
    return bool(url) and url.startswith(f"{SCHEME}://")  # type: ignore[union-attr]


def schema(name: str) -> list[Any]:
    """The table's columns as google-cloud-bigquery SchemaFields."""
    from google.cloud import bigquery

    return [bigquery.SchemaField(c, t, mode=m) for c, t, m in TABLES[name][0]]


def ensure_tables(client: Any, target: BigQueryTarget, location: str | None = None) -> None:
    """Create the dataset and the tables (partitioned by date, clustered by product) if
    they do not exist. Production creates them with Terraform (terraform/bigquery.tf)."""
    from google.cloud import bigquery

    dataset = bigquery.Dataset(f"{target.project}.{target.dataset}")
    if location:
        dataset.location = location
    client.create_dataset(dataset, exists_ok=True)
    for name, (_, partition, clustering) in TABLES.items():
        table = bigquery.Table(target.table(name), schema=schema(name))
        table.time_partitioning = bigquery.TimePartitioning(field=partition)
        table.clustering_fields = list(clustering)
        client.create_table(table, exists_ok=True)


def load_frame(client: Any, target: BigQueryTarget, name: str, frame: pd.DataFrame) -> int:
    """Append `frame` to the table as one Parquet load job (no streaming inserts, no row
    by row); returns the rows loaded. Every column of the table is written, typed; those
    the frame lacks are NULL."""
    _load(client, target.table(name), name, frame)
    return len(frame)


def _load(client: Any, table_id: str, name: str, frame: pd.DataFrame) -> None:
    """One Parquet load job of `frame` (with the columns of table `name`) into `table_id`."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from google.cloud import bigquery

    arrow_types = {
        "STRING": pa.string(),
        "DATE": pa.date32(),
        "FLOAT64": pa.float64(),
        "INT64": pa.int64(),
        "BOOL": pa.bool_(),
        "TIMESTAMP": pa.timestamp("us"),
    }
    columns = TABLES[name][0]
    arrays = []
    for column, kind, _ in columns:
        values = frame[column] if column in frame.columns else [None] * len(frame)
        if kind == "DATE" and column in frame.columns:
            values = pd.to_datetime(values).dt.date
        arrays.append(pa.array(values, type=arrow_types[kind], from_pandas=True))
    table = pa.Table.from_arrays(arrays, names=[c for c, _, _ in columns])
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    buffer.seek(0)
    config = bigquery.LoadJobConfig(
        schema=schema(name),
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
    )
    client.load_table_from_file(buffer, table_id, job_config=config).result()


def upsert_frame(
    client: Any, target: BigQueryTarget, name: str, frame: pd.DataFrame, keys: Sequence[str]
) -> int:
    """Insert or replace `frame`'s rows in the table by `keys` (as `load-sales` upserts in
    SQL): a Parquet load into a staging table of the same schema, one MERGE, the staging
    table dropped (it also expires after a day should the drop fail). Returns the rows
    the MERGE inserted or updated."""
    import uuid
    from datetime import UTC, datetime

    from google.cloud import bigquery

    stage = f"{name}_staging_{uuid.uuid4().hex[:12]}"
    table = bigquery.Table(target.table(stage), schema=schema(name))
    table.expires = datetime.now(UTC) + timedelta(days=1)
    client.create_table(table)
    try:
        columns = [c for c, _, _ in TABLES[name][0]]
        _load(client, target.table(stage), name, frame)
        on = " AND ".join(f"T.{k} = S.{k}" for k in keys)
        update = ", ".join(f"{c} = S.{c}" for c in columns if c not in keys)
        job = client.query(
            f"MERGE `{target.table(name)}` T USING `{target.table(stage)}` S ON {on} "
            f"WHEN MATCHED THEN UPDATE SET {update} "
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) "
            f"VALUES ({', '.join('S.' + c for c in columns)})"
        )
        job.result()
        return int(job.num_dml_affected_rows or 0)
    finally:
        client.delete_table(target.table(stage), not_found_ok=True)


def _query(client: Any, sql: str, **params: Any) -> list[Any]:
    from google.cloud import bigquery

    kinds = {str: "STRING", int: "INT64", float: "FLOAT64", date: "DATE"}
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter(k, kinds[type(v)], v) for k, v in params.items()
        ]
    )
    return list(client.query(sql, job_config=config).result())


@dataclass(frozen=True)
class WindowFacts:
    """What every batch of one check must agree on (`window_from_frames`' overrides)."""

    current_version: str | None
    last_sale_date: date | None


def window_facts(client: Any, target: BigQueryTarget, as_of: date, window_days: int) -> WindowFacts:
    """The current model (the one that forecast the window's newest day, newest
    `created_at` first, as `load_window`) and the newest sales day on or before as_of."""
    window_start = as_of - timedelta(days=window_days - 1)
    p = f"`{target.table('predictions')}`"
    current = _query(
        client,
        f"SELECT model_version FROM {p} WHERE target_date = "
        f"(SELECT MAX(target_date) FROM {p} WHERE target_date BETWEEN @start AND @as_of) "
        "ORDER BY created_at DESC, model_version DESC LIMIT 1",
        start=window_start,
        as_of=as_of,
    )
    last = _query(
        client,
        f"SELECT MAX(sale_date) AS last FROM `{target.table('sales')}` WHERE sale_date <= @as_of",
        as_of=as_of,
    )
    return WindowFacts(current[0][0] if current else None, last[0][0] if last else None)


def product_ranges(
    client: Any, target: BigQueryTarget, start: date, end: date, batch_size: int
) -> list[tuple[str, str]]:
    """The products with sales between `start` and `end`, cut into consecutive ranges
    (first id, last id) of at most `batch_size` products, computed in BigQuery: the
    client receives one row a batch, not one a product."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = _query(
        client,
        "SELECT MIN(product_id) AS lo, MAX(product_id) AS hi FROM ("
        " SELECT product_id,"
        "  CAST(FLOOR((ROW_NUMBER() OVER (ORDER BY product_id) - 1) / @size) AS INT64) AS b"
        f" FROM (SELECT DISTINCT product_id FROM `{target.table('sales')}`"
        "  WHERE sale_date BETWEEN @start AND @end)"
        ") GROUP BY b ORDER BY lo",
        size=int(batch_size),
        start=start,
        end=end,
    )
    return [(str(r[0]), str(r[1])) for r in rows]


def _quote(text: str) -> str:
    """A string literal of the Storage API's row restriction (GoogleSQL escaping)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def read_rows(
    read_client: Any,
    target: BigQueryTarget,
    name: str,
    columns: Sequence[str],
    restriction: str,
) -> tuple[pd.DataFrame, int]:
    """(rows, bytes read) of a table through the Storage Read API (Arrow), one stream."""
    from google.cloud import bigquery_storage

    types = bigquery_storage.types
    session = read_client.create_read_session(
        parent=f"projects/{target.project}",
        read_session=types.ReadSession(
            table=f"projects/{target.project}/datasets/{target.dataset}/tables/{name}",
            data_format=types.DataFormat.ARROW,
            read_options=types.ReadSession.TableReadOptions(
                selected_fields=list(columns), row_restriction=restriction
            ),
        ),
        max_stream_count=1,
    )
    if not session.streams:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}), 0
    table = read_client.read_rows(session.streams[0].name).to_arrow(session)
    return table.to_pandas(), int(table.nbytes)


@dataclass
class BatchFrames:
    """A batch of products' rows: sales, forecasts, and the current model's holdout."""

    sales: pd.DataFrame
    predictions: pd.DataFrame
    residuals: pd.DataFrame
    bytes_read: int = 0


def read_batch(
    read_client: Any,
    target: BigQueryTarget,
    products: tuple[str, str],
    hist_start: date,
    as_of: date,
    ref_start: date,
    model_version: str | None,
) -> BatchFrames:
    """The rows of the products in the range `products` (first id, last id): sales from
    `hist_start`, forecasts from `ref_start` (with their intervals), up to `as_of`, and
    the holdout errors of `model_version` by date."""
    lo, hi = _quote(products[0]), _quote(products[1])
    ids = f"product_id BETWEEN {lo} AND {hi}"
    sales, n1 = read_rows(
        read_client,
        target,
        "sales",
        ["product_id", "sale_date", "units_sold"],
        f"{ids} AND sale_date BETWEEN '{hist_start}' AND '{as_of}'",
    )
    preds, n2 = read_rows(
        read_client,
        target,
        "predictions",
        [
            "product_id",
            "target_date",
            "predicted_units",
            "model_version",
            "predicted_p10",
            "predicted_p90",
        ],
        f"{ids} AND target_date BETWEEN '{ref_start}' AND '{as_of}'",
    )
    residuals, n3 = pd.DataFrame(columns=["product_id", "target_date", "error"]), 0
    if model_version is not None:
        residuals, n3 = read_rows(
            read_client,
            target,
            "model_residuals",
            ["product_id", "target_date", "error"],
            f"model_version = {_quote(model_version)} AND {ids}",
        )
        residuals = residuals.sort_values(["product_id", "target_date"], kind="stable")
    return BatchFrames(sales, preds, residuals.reset_index(drop=True), n1 + n2 + n3)


def product_rows(check_id: str, as_of: date, products: pd.DataFrame) -> pd.DataFrame:
    """A check's per-product results as rows of `health_check_products`."""
    columns = [c for c, _, _ in TABLES["health_check_products"][0]]
    frame = products.assign(health_check_id=check_id, as_of=as_of)
    frame = frame[[c for c in columns if c in frame.columns]].copy()
    frame["drift"] = frame["drift"].astype(bool)
    frame["n"] = frame["n"].astype(np.int64)
    for name in ("drift_kind", "drift_test", "reference"):
        frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame


def prediction_frame(forecasts: pd.DataFrame, model_version: str, created: Any) -> pd.DataFrame:
    """The trainer's forecasts (product_id, target_date, predicted_units and, when
    present, its quantiles p10/p50/p90) as rows of the `predictions` table: the columns
    of the SQL table (`predicted_p10/_p50/_p90`, NULL without quantiles)."""
    n = len(forecasts)
    frame = pd.DataFrame(
        {
            "product_id": forecasts["product_id"].astype(str).to_numpy(),
            "target_date": pd.to_datetime(forecasts["target_date"]).dt.date.to_numpy(),
            "predicted_units": forecasts["predicted_units"].to_numpy(float),
            "model_version": [model_version] * n,
            "created_at": [pd.Timestamp(created).tz_localize(None)] * n,
        }
    )
    for q in ("p10", "p50", "p90"):
        frame[f"predicted_{q}"] = (
            forecasts[q].to_numpy(float) if q in forecasts.columns else np.full(n, np.nan)
        )
    return frame


def upsert_predictions(
    target: BigQueryTarget,
    forecasts: pd.DataFrame,
    model_version: str,
    *,
    created: Any = None,
    client: Any = None,
) -> int:
    """Write the trainer's forecasts to the data plane's `predictions` table (issue 24):
    insert or replace by (product_id, target_date), one Parquet load and one MERGE.
    Returns the rows the MERGE inserted or updated."""
    from datetime import UTC, datetime

    frame = prediction_frame(forecasts, model_version, created or datetime.now(UTC))
    client = client or target.client()
    return upsert_frame(client, target, "predictions", frame, ("product_id", "target_date"))

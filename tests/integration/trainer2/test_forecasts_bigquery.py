"""The trainer writes its forecasts to the BigQuery data plane too (issue 24): the
trainer's own `forecast_with` against the BigQuery emulator (started with .venv-beam's
interpreter, where bqemulator lives; the client is the real google-cloud-bigquery of
this venv), the rows the SQL `predictions` table gets, upserted by (product, day)."""

from __future__ import annotations

import uuid

import pandas as pd
import sqlalchemy as sa

from forecastguard import bigquery as bq
from forecastguard.config import Settings
from forecastguard.db.schema import predictions
from forecastguard.synth.output import write_database
from tests.unit.trainer.helpers import make_sales
from trainer.config import TrainConfig
from trainer.run.main import forecast_target
from trainer.serve.forecast import MOVING_AVERAGE, BaselineForecaster, forecast_with

CFG = TrainConfig(horizon=7, lookback=14, val_days=14, test_days=14, min_observations=30)
COLUMNS = ["product_id", "target_date", "predicted_units", "model_version"]


def test_bigquery_url_names_the_target() -> None:
    assert forecast_target(Settings.from_env({})) is None
    target = forecast_target(Settings.from_env({}, bigquery_url="bigquery://demo-project/shop"))
    assert (target.project, target.dataset) == ("demo-project", "shop")


def _read(client, target: bq.BigQueryTarget) -> pd.DataFrame:
    sql = f"SELECT * FROM `{target.table('predictions')}` ORDER BY product_id, target_date"
    return pd.DataFrame([dict(row) for row in client.query(sql).result()])


def test_the_trainers_forecasts_reach_bigquery(sqlite_url, beam_bigquery_emulator) -> None:
    engine = sa.create_engine(sqlite_url)
    write_database(engine, make_sales(3, 120))
    emulator = beam_bigquery_emulator
    # The emulator is the session's (tests/integration/conftest.py), the dataset this test's.
    target = bq.BigQueryTarget.from_url(
        f"bigquery://{emulator.project}/fc_{uuid.uuid4().hex[:8]}", emulator.rest_url
    )
    client = target.client()
    bq.ensure_tables(client, target)
    forecaster = BaselineForecaster(MOVING_AVERAGE, "ma-v1", CFG)
    result = forecast_with(engine, forecaster, bigquery=target)
    rows = _read(client, target)
    # A corrected forecast with its quantiles replaces the row, nothing is doubled.
    first = rows.iloc[[0]].rename(columns={"predicted_units": "x"})
    fix = pd.DataFrame(
        {
            "product_id": first["product_id"],
            "target_date": first["target_date"],
            "predicted_units": [99.5],
            "p10": [90.0],
            "p50": [99.5],
            "p90": [110.0],
        }
    )
    merged = bq.upsert_predictions(target, fix, "ma-v2", client=client)
    again = _read(client, target)
    with engine.connect() as conn:
        sql = pd.DataFrame(
            conn.execute(
                sa.select(predictions).order_by(predictions.c.product_id, predictions.c.target_date)
            )
            .mappings()
            .all()
        )
    assert result.written == len(sql) == len(rows) == 3 * CFG.horizon
    assert list(rows.columns) == [c for c, _, _ in bq.TABLES["predictions"][0]]
    got = rows[COLUMNS].assign(target_date=lambda f: pd.to_datetime(f["target_date"]))
    want = sql[COLUMNS].assign(target_date=lambda f: pd.to_datetime(f["target_date"]))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    assert rows["predicted_p90"].isna().all()  # the moving average serves no interval here
    assert merged == 1 and len(again) == len(rows)
    row = again.iloc[0]
    assert (row["predicted_units"], row["predicted_p10"], row["predicted_p90"]) == (
        99.5,
        90.0,
        110.0,
    )
    assert row["model_version"] == "ma-v2"
    pd.testing.assert_frame_equal(again.iloc[1:][COLUMNS], rows.iloc[1:][COLUMNS])

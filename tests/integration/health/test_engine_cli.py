"""`forecastguard health --engine beam` (issue 24): the Beam pipeline on FnApiRunner, run
from the main virtualenv with .venv-beam's interpreter, prints the in-process check's
JSON field for field (timings and ids aside)."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from forecastguard.cli import main
from forecastguard.db.engine import make_engine
from forecastguard.health.engine import DATAFLOW, INPROCESS, beam_python, choose_engine
from tests.integration.health.synthetic import frames, synthetic_window, write

VARYING = {"check_id", "checked_at", "duration_s", "pipeline"}


def _beam_ready() -> bool:
    python = beam_python()
    return Path(python).exists() and ".venv-beam" in python


def test_engine_choice() -> None:
    assert choose_engine(10_000, on_bigquery=False, max_inprocess_products=50_000) == INPROCESS
    assert choose_engine(60_000, on_bigquery=False, max_inprocess_products=50_000) == DATAFLOW
    assert choose_engine(10, on_bigquery=True, max_inprocess_products=50_000) == DATAFLOW
    assert choose_engine(10**7, on_bigquery=False, max_inprocess_products=0) == INPROCESS


@pytest.mark.skipif(
    not _beam_ready(), reason="needs .venv-beam (make beam-setup; make test builds it)"
)
def test_beam_engine_prints_the_in_process_json(sqlite_url: str, tmp_path) -> None:
    engine = make_engine(sqlite_url)
    write(engine, *frames(synthetic_window(300, date(2026, 5, 30), seed=4, drift_share=0.1)))
    engine.dispose()
    # Two copies of the data: a check records drift episodes the next one would see.
    copy = tmp_path / "copy.db"
    shutil.copy(sqlite_url.removeprefix("sqlite:///"), copy)
    env = {"METRICS_SINK": str(tmp_path / "metrics.jsonl")}
    args = ["health", "--as-of", "2026-05-30", "--json"]
    inprocess = CliRunner().invoke(
        main, [*args, "--database-url", sqlite_url], env=env, catch_exceptions=False
    )
    beam = CliRunner().invoke(
        main,
        [*args, "--database-url", f"sqlite:///{copy}", "--engine", "beam"],
        env=env,
        catch_exceptions=False,
    )
    assert inprocess.exit_code == beam.exit_code == 1, beam.output
    a, b = json.loads(inprocess.stdout), json.loads(beam.stdout)
    assert a.keys() == b.keys()
    for key in a.keys() - VARYING - {"products", "p_value", "metrics"}:
        assert a[key] == b[key], key
    assert b["p_value"] == pytest.approx(a["p_value"], rel=1e-9)
    assert b["metrics"]["written"] and b["metrics"]["points"] == a["metrics"]["points"]
    assert [p["product_id"] for p in a["products"]] == [p["product_id"] for p in b["products"]]
    for column in ("drift_pvalue", "ks_pvalue", "rmse"):
        x = np.array([p[column] for p in a["products"]], float)
        y = np.array([p[column] for p in b["products"]], float)
        np.testing.assert_allclose(y, x, rtol=0, atol=1e-9)
    assert [p["drift"] for p in a["products"]] == [p["drift"] for p in b["products"]]
    # Both checks are stored, with their products, in the database they read.
    for url in (sqlite_url, f"sqlite:///{copy}"):
        engine = make_engine(url)
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT COUNT(*) FROM health_check_products").scalar()
        assert stored == 300


@pytest.mark.skipif(
    not _beam_ready(), reason="needs .venv-beam (make beam-setup; make test builds it)"
)
def test_beam_engine_reports_a_bad_source(tmp_path) -> None:
    result = CliRunner().invoke(
        main,
        ["health", "--engine", "beam", "--database-url", "bigquery://only-a-project"],
        env={},
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert "bigquery://PROJECT/DATASET" in result.output


def test_load_sales_into_bigquery(tmp_path, beam_bigquery_emulator) -> None:
    """`load-sales --database-url bigquery://P/D` hands the file to .venv-beam's loader:
    validated as into SQL, upserted into the emulator's `sales`."""
    from forecastguard import bigquery as bq

    emulator = beam_bigquery_emulator
    url = f"bigquery://{emulator.project}/shop_{uuid.uuid4().hex[:8]}"
    # The tables, with this venv's client (the loader is .venv-beam's).
    target = bq.BigQueryTarget.from_url(url, emulator.rest_url)
    bq.ensure_tables(target.client(), target)
    good = tmp_path / "good.csv"
    good.write_text("product_id,date,units\nA,2026-05-01,3\nB,2026-05-01,1\n", "utf-8")
    env = {"BIGQUERY_API_ENDPOINT": emulator.rest_url}
    args = ["load-sales", "--database-url", url, "--csv", str(good)]
    loaded = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    # (refusals: tests/integration/beam/test_load.py, the same loader)
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(loaded.stdout) | {"target": url} == {
        "rows": 2,
        "merged": 2,
        "skipped": 0,
        "products": 2,
        "target": url,
    }

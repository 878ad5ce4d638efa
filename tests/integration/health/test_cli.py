"""`forecastguard health`: JSON and table output, exit 0 healthy / 1 unhealthy / 2 error."""

from __future__ import annotations

import json
from datetime import date

import pytest
from click.testing import CliRunner

from forecastguard.cli import main
from forecastguard.db.engine import make_engine
from tests.integration.health.synthetic import frames, synthetic_window, write


@pytest.fixture
def filled_url(db_url: str) -> str:
    engine = make_engine(db_url)
    data = synthetic_window(30, date(2026, 5, 30), seed=21)
    write(engine, *frames(data))
    engine.dispose()
    return db_url


def _run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["health", *args], env=env or {}, catch_exceptions=False)


def test_healthy_json_exit_0(filled_url: str) -> None:
    result = _run("--database-url", filled_url, "--as-of", "2026-05-30", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["healthy"] is True and body["n_products"] == 30 and len(body["products"]) == 30
    first = body["products"][0]
    assert isinstance(first["n"], int) and isinstance(first["rmse"], float)
    assert isinstance(first["drift"], bool) and first["reference"] == "previous_window"
    for key in (
        "avg_rmse",
        "p_value",
        "drift_detected",
        "reasons",
        "window_start",
        "window_end",
        "model_versions",
        "duration_s",
    ):
        assert key in body


def test_unhealthy_table_exit_1(filled_url: str) -> None:
    result = _run(
        "--database-url",
        filled_url,
        "--as-of",
        "2026-05-30",
        "--window-days",
        "14",
        env={"RMSE_THRESHOLD": "0.5"},
    )
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model UNHEALTHY  window 2026-05-17 .. 2026-05-30")
    assert any(line.strip().startswith("- avg_rmse") for line in lines)
    assert "worst 20 of 30 products:" in result.stdout


def test_errors_exit_2(tmp_path) -> None:
    unreachable = _run(
        "--database-url", "mysql+pymysql://x:y@127.0.0.1:9/db", "--as-of", "2026-05-30"
    )
    assert unreachable.exit_code == 2 and "unreachable" in unreachable.stderr
    bad_date = _run("--database-url", "sqlite:///x.db", "--as-of", "30/05/2026")
    assert bad_date.exit_code == 2
    future = _run("--database-url", "sqlite:///x.db", "--as-of", "2999-01-01")
    assert future.exit_code == 2 and "in the future" in future.stderr
    bad_env = _run("--database-url", "sqlite:///x.db", env={"FDR_ALPHA": "2"})
    assert bad_env.exit_code == 2 and "FDR_ALPHA" in bad_env.stderr

"""The entry point's settings: flags over environment variables, clear errors."""

from __future__ import annotations

import pytest

from forecastguard.config import ConfigError
from trainer.run.cli import build, command, default_ids

BASE = {
    "mode": "train",
    "database_url": None,
    "artifact_uri": None,
    "run_id": None,
    "trials": 3,
    "epochs": None,
    "timeout": None,
    "optuna_storage": None,
    "train_config": None,
    "search_units": None,
    "disparity_weight": 0.5,
    "rmsse_tolerance": 0.0,
    "disparity_tolerance": 0.1,
    "shap_products": 8,
    "max_retries": 0,
}
ENV = {"DATABASE_URL": "sqlite:///x.db", "ARTIFACT_URI": "file:///tmp/a"}


def _build(env=None, **params):
    return build({**BASE, **params}, {**ENV, **(env or {})})


def test_flags_override_environment_and_request_comes_from_env():
    settings, opts = _build(
        env={
            "REQUEST_ID": "req-1",
            "REASON": "avg_rmse 21 > 18",
            "WINDOW_START": "2026-05-01",
            "HOLIDAY_COUNTRY": "DE",
            "CLOUD_RUN_TASK_INDEX": "1",
            "CLOUD_RUN_TASK_COUNT": "3",
        },
        artifact_uri="file:///tmp/flag",
        run_id="r-7",
        epochs=3,
        train_config='{"horizon": 7, "val_days": 14, "test_days": 14}',
        search_units="8, 16",
    )
    assert settings.artifact_uri == "file:///tmp/flag"
    assert opts.run_id == opts.study_id == "r-7"
    assert opts.train_config.epochs == 3 and opts.train_config.horizon == 7
    assert opts.train_config.holiday_country == "DE"
    assert opts.search_units == (8, 16)
    assert (opts.task_index, opts.task_count) == (1, 3)
    assert opts.request.request_id == "req-1" and opts.request.window_start == "2026-05-01"
    assert opts.request.health_check_id is None


def test_cloud_run_ids_and_retried_attempts():
    run_id, study = default_ids({"CLOUD_RUN_EXECUTION": "trainer-x1"}, attempt=2)
    assert (run_id, study) == ("trainer-x1-a2", "trainer-x1")
    assert default_ids({"CLOUD_RUN_EXECUTION": "trainer-x1"}, attempt=0)[0] == "trainer-x1"
    local, _ = default_ids({}, attempt=0)
    assert len(local) > 10
    _, opts = _build(env={"CLOUD_RUN_EXECUTION": "exec-9", "CLOUD_RUN_TASK_ATTEMPT": "1"})
    assert opts.run_id == "exec-9-a1" and opts.attempt == 1


def test_optuna_storage_is_a_database_of_its_own():
    _, opts = _build(optuna_storage="sqlite:///optuna.db")
    assert opts.optuna_storage == "sqlite:///optuna.db"
    with pytest.raises(ConfigError, match="OPTUNA_STORAGE must not be DATABASE_URL"):
        _build(optuna_storage="sqlite:///x.db")


@pytest.mark.parametrize(
    "env, params, message",
    [
        ({"ARTIFACT_URI": ""}, {}, "ARTIFACT_URI"),
        ({"DATABASE_URL": ""}, {}, "DATABASE_URL"),
        ({}, {"run_id": "../x"}, "RUN_ID"),
        ({}, {"train_config": '{"horizon": 0}'}, "TRAIN_CONFIG"),
        ({}, {"train_config": '{"nope": 1}'}, "unknown field"),
        ({}, {"train_config": "[1]"}, "JSON object"),
        ({}, {"search_units": "a,b"}, "SEARCH_UNITS"),
        ({"CLOUD_RUN_TASK_INDEX": "x"}, {}, "CLOUD_RUN_TASK_INDEX must be an integer"),
        ({"CLOUD_RUN_TASK_INDEX": "3", "CLOUD_RUN_TASK_COUNT": "2"}, {}, ">= CLOUD_RUN_TASK_COUNT"),
    ],
)
def test_bad_settings_name_the_variable(env, params, message):
    with pytest.raises(ConfigError, match=message):
        _build(env=env, **params)


def test_the_interval_coverage_bounds_come_from_the_environment():
    from click.testing import CliRunner

    from trainer.judge.promotion import COVERAGE_BOUNDS

    _, opts = _build()
    assert opts.tolerances.coverage == COVERAGE_BOUNDS
    _, opts = _build(coverage_bounds=(0.7, 0.9))
    assert opts.tolerances.coverage == (0.7, 0.9)
    with pytest.raises(ConfigError, match="PROMOTION_COVERAGE_BOUNDS"):
        _build(coverage_bounds=(0.9, 0.7))
    out = CliRunner().invoke(command, [], env=ENV | {"PROMOTION_COVERAGE_BOUNDS": "0.7 x"})
    assert out.exit_code == 2 and "coverage-bounds" in out.output


def test_click_validates_flags():
    from click.testing import CliRunner

    out = CliRunner().invoke(command, ["--mode", "nope"], env=ENV)
    assert out.exit_code == 2 and "nope" in out.output
    out = CliRunner().invoke(command, ["--trials", "0"], env=ENV)
    assert out.exit_code == 2


def _run_trainer(tmp_path, task_index: int, task_count: int = 4):
    """`python -m trainer --mode forecast` as Cloud Run starts one task of an execution."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(root / p) for p in ("shared", "jobs/trainer")),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fg.db'}",
        "ARTIFACT_URI": (tmp_path / "artifacts").as_uri(),
        "CLOUD_RUN_EXECUTION": "forecastguard-trainer-abc12",
        "CLOUD_RUN_TASK_INDEX": str(task_index),
        "CLOUD_RUN_TASK_COUNT": str(task_count),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "--mode", "forecast"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr  # the JSON log lines
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return proc.returncode, [line["message"] for line in lines], proc


def test_forecast_mode_runs_in_task_zero_only(tmp_path):
    """The daily forecast is one execution; with task_count > 1 (parallel tuning) every
    task but 0 must leave without forecasting. Task 0 on a database without a champion
    fails (NoChampion), so the guard is what makes task 1 succeed, not an empty setup."""
    from forecastguard.db.migrate import upgrade

    upgrade(f"sqlite:///{tmp_path / 'fg.db'}")
    code, messages, proc = _run_trainer(tmp_path, task_index=1)
    assert code == 0, proc.stderr
    assert "forecast mode runs in task 0 only: this task does nothing" in messages
    assert "trainer failed" not in messages
    code, messages, proc = _run_trainer(tmp_path, task_index=0)
    assert code == 1, proc.stderr
    assert "trainer failed" in messages
    assert "NoChampion" in proc.stdout + proc.stderr


CLOUD_SQL = {
    "DATABASE_URL": "",
    "CLOUD_SQL_INSTANCE": "proj:europe-west1:fg",
    "DB_USER": "forecastguard",
    "DB_NAME": "forecastguard",
}


def test_optuna_url_is_built_from_the_one_database_password():
    """On Google Cloud the study's URL comes from DB_PASS (the db-pass secret the SQL user
    was set from), so no second copy of the password can differ from the user's."""
    import sqlalchemy as sa

    for password in ("first-Generated-1", "p@ss/w:rd?#&"):
        _, opts = _build(
            env={**CLOUD_SQL, "DB_PASS": password}, optuna_database="forecastguard_optuna"
        )
        url = sa.make_url(opts.optuna_storage)
        assert url.drivername == "mysql+pymysql"
        assert (url.username, url.password) == ("forecastguard", password)
        assert url.database == "forecastguard_optuna"
        assert url.query == {"unix_socket": "/cloudsql/proj:europe-west1:fg"}
    # Without OPTUNA_DATABASE (or OPTUNA_STORAGE) the study stays in memory.
    _, opts = _build(env={**CLOUD_SQL, "DB_PASS": "x"})
    assert opts.optuna_storage is None


@pytest.mark.parametrize(
    "env, params, message",
    [
        (
            {**CLOUD_SQL, "DB_PASS": "x"},
            {"optuna_database": "o", "optuna_storage": "sqlite:///o.db"},
            "not both",
        ),
        ({**CLOUD_SQL, "DB_IAM_AUTH": "1"}, {"optuna_database": "o"}, "password login"),
        ({}, {"optuna_database": "o"}, "CLOUD_SQL_INSTANCE"),
    ],
)
def test_optuna_database_needs_a_password_login_on_cloud_sql(env, params, message):
    with pytest.raises(ConfigError, match=message):
        _build(env=env, **params)

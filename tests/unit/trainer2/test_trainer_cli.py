"""The entry point's settings: flags over environment variables, clear errors."""

from __future__ import annotations

import pytest

from forecastguard.config import ConfigError
from trainer.cli import build, command, default_ids

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


def test_click_validates_flags():
    from click.testing import CliRunner

    out = CliRunner().invoke(command, ["--mode", "nope"], env=ENV)
    assert out.exit_code == 2 and "nope" in out.output
    out = CliRunner().invoke(command, ["--trials", "0"], env=ENV)
    assert out.exit_code == 2

"""Choosing and configuring the launcher; the trainer's environment."""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path

import pytest

from forecastguard.config import ConfigError, Settings
from forecastguard.launcher import (
    DEFAULT_COMMAND,
    CloudRunLauncher,
    LocalLauncher,
    PermanentLaunchError,
    make_launcher,
    trainer_env,
)

JOB = "projects/p/locations/europe-west1/jobs/trainer"


def test_trainer_env_is_all_strings():
    env = trainer_env("r1", "rmse", None, date(2026, 5, 1), date(2026, 5, 30))
    assert env == {
        "REQUEST_ID": "r1",
        "REASON": "rmse",
        "HEALTH_CHECK_ID": "",
        "WINDOW_START": "2026-05-01",
        "WINDOW_END": "2026-05-30",
    }


def test_a_job_name_makes_a_cloud_run_launcher_without_creating_a_client():
    launcher = make_launcher(Settings.from_env({"TRAINER_JOB": JOB}), {})
    assert isinstance(launcher, CloudRunLauncher)
    assert launcher.job == JOB and launcher._client is None


@pytest.mark.parametrize("job", ["trainer", "projects/p/jobs/trainer", "local-ish"])
def test_a_malformed_job_name_is_named(job):
    with pytest.raises(ConfigError, match="TRAINER_JOB must be projects/P/locations/L/jobs/J"):
        make_launcher(Settings.from_env({"TRAINER_JOB": job}), {})


def test_a_missing_job_is_named():
    with pytest.raises(ConfigError, match="TRAINER_JOB"):
        make_launcher(Settings.from_env({}), {})


def test_local_passes_the_database_and_artifacts_through(tmp_path):
    settings = Settings.from_env(
        {
            "TRAINER_JOB": "local",
            "DATABASE_URL": "sqlite:///x.db",
            "ARTIFACT_URI": "file:///a",
            "TRAINER_LOG_DIR": str(tmp_path),
        }
    )
    launcher = make_launcher(settings, {"PATH": "/bin", "DATABASE_URL": "old"})
    assert isinstance(launcher, LocalLauncher)
    assert launcher.command == DEFAULT_COMMAND
    assert DEFAULT_COMMAND[1:] == ("-m", "trainer", "--mode", "train")
    assert launcher.base_env == {
        "PATH": "/bin",
        "DATABASE_URL": "sqlite:///x.db",
        "ARTIFACT_URI": "file:///a",
    }
    assert launcher.log_dir == tmp_path


def test_trainer_command_is_split_like_a_shell():
    settings = Settings.from_env({"TRAINER_COMMAND": "python -m trainer --run-id 'a b'"})
    assert settings.trainer_command == ("python", "-m", "trainer", "--run-id", "a b")
    with pytest.raises(ConfigError, match="TRAINER_COMMAND must be a shell-style command"):
        Settings.from_env({"TRAINER_COMMAND": "python 'unclosed"})


def test_a_command_that_does_not_exist_is_a_permanent_error(tmp_path):
    launcher = LocalLauncher([str(tmp_path / "no-such-trainer")], log_dir=tmp_path, base_env={})
    with pytest.raises(PermanentLaunchError, match="no-such-trainer"):
        launcher.launch("r1", {"REQUEST_ID": "r1"})


def test_a_local_run_writes_its_output_to_its_log_file(tmp_path):
    script = "import os, sys; print('hello', os.environ['REQUEST_ID'], sys.argv[1:])"
    launcher = LocalLauncher(
        [sys.executable, "-c", script, "--mode", "train"], log_dir=tmp_path / "logs", base_env={}
    )
    launched = launcher.launch("r/1", {"REQUEST_ID": "r/1"})
    assert launched.execution_name == f"local:pid={launched.pid}"
    assert launched.log_path.startswith(str(tmp_path / "logs" / "trainer-"))
    assert launched.log_path.endswith("-r_1.log")
    log_file = Path(launched.log_path)
    deadline = time.monotonic() + 20
    while not log_file.read_text().endswith("\n") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log_file.read_text().strip() == "hello r/1 ['--mode', 'train']"

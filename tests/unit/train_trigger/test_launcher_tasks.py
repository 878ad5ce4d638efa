"""The local launcher runs a job's tasks as subprocesses, as Cloud Run does (issue 26)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from forecastguard.config import ConfigError, Settings
from forecastguard.launcher import LocalLauncher, make_launcher

SCRIPT = (
    "import os, pathlib; e = os.environ; "
    "pathlib.Path(e['OUT']).joinpath(e['CLOUD_RUN_TASK_INDEX']).write_text("
    "e['CLOUD_RUN_TASK_COUNT'] + ' ' + e['CLOUD_RUN_EXECUTION'] + ' ' + e['REQUEST_ID'])"
)


def _wait_for(path: Path, names: list[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all((path / n).exists() and (path / n).read_text() for n in names):
            return
        time.sleep(0.05)
    raise AssertionError(f"tasks did not all write under {path}")


def test_three_tasks_share_one_execution(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    launcher = LocalLauncher(
        [sys.executable, "-c", SCRIPT],
        log_dir=tmp_path / "logs",
        base_env={"OUT": str(out)},
        task_count=3,
    )
    launched = launcher.launch("req-1", {"REQUEST_ID": "req-1"})
    assert len(launched.task_pids) == 3 and launched.pid == launched.task_pids[0]
    assert launched.execution_name == f"local:pid={launched.pid}"
    _wait_for(out, ["0", "1", "2"])
    seen = {n: (out / n).read_text().split() for n in ("0", "1", "2")}
    assert {v[0] for v in seen.values()} == {"3"}
    assert len({v[1] for v in seen.values()}) == 1  # one execution id: one run id
    assert seen["0"][1].startswith("local-") and seen["0"][2] == "req-1"
    assert len(list((tmp_path / "logs").glob("*.log"))) == 3


def test_one_task_sets_no_task_variables(tmp_path: Path) -> None:
    launcher = LocalLauncher(
        [sys.executable, "-c", "import os; assert 'CLOUD_RUN_TASK_INDEX' not in os.environ"],
        log_dir=tmp_path,
        base_env={},
    )
    launched = launcher.launch("req-1", {})
    assert launched.task_pids == ()


def test_task_count_from_the_environment_is_checked(tmp_path: Path) -> None:
    settings = Settings.from_env({"TRAINER_JOB": "local", "TRAINER_LOG_DIR": str(tmp_path)})
    launcher = make_launcher(settings, {"TRAINER_TASK_COUNT": "4"})
    assert isinstance(launcher, LocalLauncher) and launcher.task_count == 4
    with pytest.raises(ConfigError, match="TRAINER_TASK_COUNT must be an integer"):
        make_launcher(settings, {"TRAINER_TASK_COUNT": "four"})
    with pytest.raises(ConfigError, match="TRAINER_TASK_COUNT must be >= 1"):
        make_launcher(settings, {"TRAINER_TASK_COUNT": "0"})

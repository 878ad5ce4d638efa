"""TRAINER_JOB=local: the function starts the trainer as a detached subprocess, settings
read from the environment at the function's boundary."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest

from forecastguard import retrain
from forecastguard.db.engine import make_engine
from tests.integration.train_trigger.helpers import deliver, load_event

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")
REQUEST_ID = "5a1e0c7d2b9f4e6a8c3d1f0b7e2a9c4d"


def wait_for_status(
    engine, request_id: str, wanted: str, timeout_s: float = 30
) -> retrain.RetrainRequest:
    deadline = time.monotonic() + timeout_s
    while True:
        row = retrain.get(engine, request_id)
        if row is not None and row.status == wanted:
            return row
        if time.monotonic() > deadline:
            pytest.fail(f"{request_id} is {row.status if row else None}, not {wanted}")
        time.sleep(0.1)


def test_a_local_trainer_subprocess_is_started_and_reports_its_end(
    function, sqlite_url, tmp_path, monkeypatch
):
    app, module = function
    out = tmp_path / "seen.json"
    command = [sys.executable, str(FAKE_TRAINER), str(out), "--mode", "train"]
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ARTIFACT_URI", f"file://{tmp_path / 'artifacts'}")
    monkeypatch.setenv("TRAINER_JOB", "local")
    monkeypatch.setenv("TRAINER_COMMAND", shlex.join(command))
    monkeypatch.setenv("TRAINER_LOG_DIR", str(tmp_path / "logs"))
    # The function's secrets (issue 28): the trainer gets SMTP_PASSWORD for its email,
    # never the health endpoint's token nor anything outside its allow-list.
    monkeypatch.setenv("HEALTH_API_TOKEN", "the-health-token")
    monkeypatch.setenv("SMTP_PASSWORD", "the-smtp-password")
    monkeypatch.setenv("FG_UNRELATED_SECRET", "not for the trainer")
    module.use_runtime(None)  # built from the environment on the first event

    assert deliver(app.test_client(), load_event("retrain_request")) == 200
    engine = make_engine(sqlite_url)
    try:
        row = wait_for_status(engine, REQUEST_ID, "finished")
    finally:
        started = retrain.get(engine, REQUEST_ID)
        if started and started.status != "finished" and started.execution_name:
            os.kill(int(started.execution_name.split("=")[1]), signal.SIGTERM)  # ours
        engine.dispose()

    assert row.execution_name.startswith("local:pid=")
    log_path = Path(row.log_path)
    assert log_path.parent == tmp_path / "logs"
    deadline = time.monotonic() + 10
    while "fake trainer ran" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"fake trainer ran for {REQUEST_ID}" in log_path.read_text()
    seen = json.loads(out.read_text())
    assert seen["args"] == ["--mode", "train"]
    assert seen["env"] == {
        "REQUEST_ID": REQUEST_ID,
        "REASON": "avg_rmse 21.4 > 18.0; drift in 7 of 40 products",
        "HEALTH_CHECK_ID": "0b6f2d4e-8a1c-4f3b-9e7d-2c5a1b8e6f90",
        "WINDOW_START": "2026-05-01",
        "WINDOW_END": "2026-05-30",
        "DATABASE_URL": sqlite_url,
        "ARTIFACT_URI": f"file://{tmp_path / 'artifacts'}",
    }
    assert "SMTP_PASSWORD" in seen["names"] and "PATH" in seen["names"]
    assert "HEALTH_API_TOKEN" not in seen["names"]
    assert "FG_UNRELATED_SECRET" not in seen["names"]

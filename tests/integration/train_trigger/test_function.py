"""on_retrain_request through the functions-framework test client, with real Pub/Sub
CloudEvents, and run_job through the real run_v2 client against a recording server."""

from __future__ import annotations

import logging

import grpc
import pytest
import sqlalchemy as sa
from google.cloud import run_v2

from forecastguard import retrain
from forecastguard.db.schema import retrain_requests
from tests.integration.train_trigger.helpers import (
    EXECUTION,
    JOB,
    RUN_JOB,
    deliver,
    load_event,
    operation,
    payload_of,
    retrain_event,
)

REQUEST_ID = "5a1e0c7d2b9f4e6a8c3d1f0b7e2a9c4d"


@pytest.fixture
def setup(function, make_runtime, sqlite_url):
    """(test client, runtime) of the function, on a migrated SQLite database."""
    app, module = function
    runtime = make_runtime(sqlite_url)
    module.use_runtime(runtime)
    return app.test_client(), runtime


def run_job_envs(recorder) -> list[dict[str, str]]:
    """The environment overrides of every RunJob request that reached the server."""
    envs = []
    for call in recorder.calls_to(RUN_JOB):
        request = call.parse(run_v2.RunJobRequest)
        assert request.name == JOB
        (override,) = request.overrides.container_overrides
        envs.append({e.name: e.value for e in override.env})
    return envs


def test_a_retrain_message_starts_the_job_with_its_overrides(setup, recorder):
    client, runtime = setup
    event = load_event("retrain_request")
    assert deliver(client, event) == 200

    assert run_job_envs(recorder) == [
        {
            "REQUEST_ID": REQUEST_ID,
            "REASON": "avg_rmse 21.4 > 18.0; drift in 7 of 40 products",
            "HEALTH_CHECK_ID": "0b6f2d4e-8a1c-4f3b-9e7d-2c5a1b8e6f90",
            "WINDOW_START": "2026-05-01",
            "WINDOW_END": "2026-05-30",
        }
    ]
    row = retrain.get(runtime.engine, REQUEST_ID)
    assert row.status == "started"
    assert row.execution_name == EXECUTION
    assert row.message_id == "11385728392047201"
    assert row.model_version == "lstm-20260401-1"
    assert row.started_at is not None and row.error is None


def test_repeated_deliveries_start_exactly_one_run(setup, recorder):
    client, runtime = setup
    event = load_event("retrain_request")
    for _ in range(3):
        assert deliver(client, event) == 200
    # The same request published again (another message id) is no new request either.
    assert deliver(client, retrain_event("99999")) == 200
    assert len(recorder.calls_to(RUN_JOB)) == 1
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(retrain_requests)).scalar() == 1
    assert retrain.get(runtime.engine, REQUEST_ID).message_id == "11385728392047201"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("retrain_request_bad_schema", "schema_version must be 1, got 2"),
        ("retrain_request_bad_window", "window_start 2026-06-15 is after window_end 2026-05-30"),
        ("retrain_request_not_json", "message data is not UTF-8 JSON"),
        ("retrain_request_no_data", "the Pub/Sub message has no data"),
    ],
)
def test_a_malformed_message_is_rejected_logged_and_acknowledged(
    setup, recorder, caplog, name, problem
):
    client, runtime = setup
    event = load_event(name)
    message_id = event["data"]["message"]["messageId"]
    with caplog.at_level(logging.WARNING, logger="forecastguard.trigger"):
        assert deliver(client, event) == 200
        assert deliver(client, event) == 200  # redelivered: still acknowledged, kept once

    assert recorder.calls_to(RUN_JOB) == []
    with runtime.engine.connect() as conn:
        rows = conn.execute(sa.select(retrain_requests)).all()
    assert len(rows) == 1
    row = rows[0]
    assert (row.request_id, row.status, row.message_id) == (
        f"rejected:{message_id}",
        "rejected",
        message_id,
    )
    assert problem in row.error
    # Nothing is lost: the payload as it came.
    if name == "retrain_request_not_json":
        assert row.payload.startswith("base64:")
    elif name == "retrain_request_no_data":
        assert '"messageId": "11385728392047205"' in row.payload
    else:
        assert '"request_id"' in row.payload
    logged = [r for r in caplog.records if r.getMessage() == "retrain message rejected"]
    assert logged and logged[0].message_id == message_id and problem in logged[0].error


def test_a_request_during_a_run_is_queued_then_started_when_the_trainer_is_free(setup, recorder):
    client, runtime = setup
    assert deliver(client, load_event("retrain_request")) == 200
    assert deliver(client, retrain_event("201", request_id="b", window_end="2026-05-31")) == 200
    assert deliver(client, retrain_event("202", request_id="c", window_end="2026-06-01")) == 200
    assert len(recorder.calls_to(RUN_JOB)) == 1
    assert retrain.get(runtime.engine, "b").status == "superseded"
    assert retrain.get(runtime.engine, "c").status == "queued"

    # The trainer ends; the ledger names the request waiting for it.
    waiting = retrain.mark_finished(runtime.engine, REQUEST_ID)
    assert waiting is not None and waiting.request_id == "c"
    # The next delivery of anything (here a late duplicate) starts the queued request.
    assert deliver(client, load_event("retrain_request")) == 200
    envs = run_job_envs(recorder)
    assert [e["REQUEST_ID"] for e in envs] == [REQUEST_ID, "c"]
    assert envs[1]["WINDOW_END"] == "2026-06-01"
    assert retrain.get(runtime.engine, "c").status == "started"
    assert retrain.get(runtime.engine, REQUEST_ID).status == "finished"


def test_a_run_past_the_timeout_no_longer_blocks(function, make_runtime, sqlite_url, recorder):
    app, module = function
    runtime = make_runtime(sqlite_url, timeout_s=60)
    module.use_runtime(runtime)
    client = app.test_client()
    assert deliver(client, load_event("retrain_request")) == 200
    with runtime.engine.begin() as conn:  # claimed long ago, never heard of since
        conn.execute(
            sa.update(retrain_requests).values(started_at=retrain.utcnow().replace(year=2025))
        )
    assert deliver(client, retrain_event("301", request_id="fresh")) == 200
    assert [e["REQUEST_ID"] for e in run_job_envs(recorder)] == [REQUEST_ID, "fresh"]
    stale = retrain.get(runtime.engine, REQUEST_ID)
    assert stale.status == "failed" and "TRAINER_TIMEOUT_S=60s" in stale.error


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_a_transient_error_is_retried_then_raised_for_redelivery(setup, recorder, code):
    client, runtime = setup
    recorder.respond(RUN_JOB, code, code, code, operation())
    event = load_event("retrain_request")

    assert deliver(client, event) == 500  # not acknowledged: Pub/Sub redelivers
    assert len(recorder.calls_to(RUN_JOB)) == 3  # three attempts, with backoff
    row = retrain.get(runtime.engine, REQUEST_ID)
    assert row.status == "queued"
    assert code.name in row.error and "will retry" in row.error
    assert retrain.in_progress(runtime.engine, timeout_s=3600) is None

    assert deliver(client, event) == 200  # the redelivery starts it
    assert len(recorder.calls_to(RUN_JOB)) == 4
    row = retrain.get(runtime.engine, REQUEST_ID)
    assert (row.status, row.execution_name) == ("started", EXECUTION)


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
    ],
)
def test_a_permanent_error_is_recorded_and_acknowledged(setup, recorder, code):
    client, runtime = setup
    recorder.respond(RUN_JOB, code)
    event = load_event("retrain_request")
    assert deliver(client, event) == 200
    assert deliver(client, event) == 200  # a redelivery does not try again
    assert len(recorder.calls_to(RUN_JOB)) == 1
    row = retrain.get(runtime.engine, REQUEST_ID)
    assert row.status == "failed"
    assert row.error.startswith(f"could not start the trainer: run_job {JOB}: {code.name}")
    # The trainer is free for the next request.
    recorder.respond(RUN_JOB, operation())
    assert deliver(client, retrain_event("401", request_id="next")) == 200
    assert retrain.get(runtime.engine, "next").status == "started"


def test_the_event_payload_fixture_is_a_valid_retrain_message():
    body = payload_of(load_event("retrain_request"))
    assert body["request_id"] == REQUEST_ID and body["schema_version"] == 1


def test_a_field_too_long_for_its_column_is_rejected_not_redelivered(setup, recorder):
    client, runtime = setup
    assert deliver(client, retrain_event("601", model_version="v" * 65)) == 200
    row = retrain.get(runtime.engine, "rejected:601")
    assert row.status == "rejected"
    assert row.error == "model_version is longer than 64 characters"
    assert recorder.calls_to(RUN_JOB) == []


@pytest.mark.mariadb
def test_a_huge_malformed_message_is_kept_truncated_on_mariadb(
    function, make_runtime, mariadb_url, recorder
):
    app, module = function
    runtime = make_runtime(mariadb_url)
    module.use_runtime(runtime)
    event = retrain_event("701", request_id="x" * 200_000)  # far beyond TEXT on MySQL
    assert deliver(app.test_client(), event) == 200
    row = retrain.get(runtime.engine, "rejected:701")
    assert row.status == "rejected"
    assert row.error.startswith("request_id must be 1-128 characters")
    assert row.error.endswith("...(truncated)") and len(row.error) < 200
    assert row.payload.startswith('{"schema_version": 1')
    assert "...[truncated: " in row.payload and len(row.payload.encode()) <= 60_000

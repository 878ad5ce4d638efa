"""A trainer that died without reporting its end does not block retraining (issue 14, 13).

The ledger asks the launcher whether the run in progress is alive: the real run_v2
ExecutionsClient against a recording gRPC server (Cloud Run), or the pid (local).
"""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from google.cloud import run_v2
from google.cloud.run_v2.services.executions.transports import ExecutionsGrpcTransport
from google.protobuf import timestamp_pb2

from forecastguard import retrain, trigger
from forecastguard.db.engine import make_engine
from forecastguard.launcher import CloudRunLauncher, local_liveness
from tests.integration.train_trigger.helpers import EXECUTION, JOB, RUN_JOB, retrain_event

GET_EXECUTION = "/google.cloud.run.v2.Executions/GetExecution"


@pytest.fixture
def runtime(db_url, jobs_client, recorder):
    executions = run_v2.ExecutionsClient(
        transport=ExecutionsGrpcTransport(channel=recorder.channel())
    )
    engine = make_engine(db_url)
    launcher = CloudRunLauncher(
        JOB, client=jobs_client, executions_client=executions, backoff_s=0.01, call_timeout_s=10
    )
    yield trigger.Runtime(engine, launcher, 6 * 3600)
    executions.transport.close()
    engine.dispose()


def _deliver(runtime, message_id: str, request_id: str, window_end: str) -> trigger.Outcome:
    event = retrain_event(message_id, request_id=request_id, window_end=window_end)
    return trigger.handle_event(runtime, event["id"], event["data"])


def _ended(failed: int = 1, message: str = "Container terminated: out of memory"):
    execution = run_v2.Execution(
        name=EXECUTION,
        failed_count=failed,
        succeeded_count=1 - failed,
        conditions=[run_v2.Condition(type_="Completed", message=message)],
    )
    pb = run_v2.Execution.pb(execution)
    pb.completion_time.CopyFrom(timestamp_pb2.Timestamp(seconds=1_800_000_000))
    return pb


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (_ended(), "out of memory"),
        (_ended(failed=0, message=""), "succeeded 1"),  # ended well but never reported
        (grpc.StatusCode.NOT_FOUND, "not found"),
    ],
)
def test_a_dead_run_is_failed_and_the_next_request_starts(runtime, recorder, answer, why):
    assert _deliver(runtime, "m1", "first", "2026-05-30").status == "started"
    recorder.respond(GET_EXECUTION, answer)
    second = _deliver(runtime, "m2", "second", "2026-06-06")
    assert second.status == "started"
    first = retrain.get(runtime.engine, "first")
    assert first.status == "failed" and why in first.error
    assert first.error.startswith("run died without reporting its end")
    (ask,) = recorder.calls_to(GET_EXECUTION)
    assert ask.parse(run_v2.GetExecutionRequest).name == EXECUTION
    assert len(recorder.calls_to(RUN_JOB)) == 2


@pytest.mark.parametrize(
    "answer",
    [run_v2.Execution(name=EXECUTION, running_count=1), grpc.StatusCode.UNAVAILABLE],
    ids=["running", "api-unavailable"],
)
def test_a_live_or_unknown_run_keeps_the_trainer(runtime, recorder, answer):
    assert _deliver(runtime, "m1", "first", "2026-05-30").status == "started"
    recorder.respond(GET_EXECUTION, answer)
    assert _deliver(runtime, "m2", "second", "2026-06-06").status == "queued"
    assert retrain.get(runtime.engine, "first").status == "started"
    assert len(recorder.calls_to(RUN_JOB)) == 1


def test_a_run_that_reported_its_end_meanwhile_is_left_alone(runtime, recorder):
    assert _deliver(runtime, "m1", "first", "2026-05-30").status == "started"
    row = retrain.get(runtime.engine, "first")
    retrain.mark_finished(runtime.engine, "first")
    assert not retrain.mark_dead(runtime.engine, "first", started_at=row.started_at, reason="ended")
    assert retrain.get(runtime.engine, "first").status == "finished"


def test_local_liveness_follows_the_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert local_liveness(f"local:pid={process.pid}").alive is True
    finally:
        process.kill()
        process.wait()
    state = local_liveness(f"local:pid={process.pid}")
    assert state.alive is False and str(process.pid) in state.reason
    assert local_liveness("projects/p/locations/l/jobs/j/executions/e").alive is None

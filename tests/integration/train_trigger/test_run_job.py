"""CloudRunLauncher: the real run_v2 client against a recording gRPC server."""

from __future__ import annotations

import grpc
import pytest
from google.cloud import run_v2

from forecastguard.launcher import (
    CloudRunLauncher,
    PermanentLaunchError,
    TransientLaunchError,
)
from tests.integration.train_trigger.helpers import EXECUTION, JOB, RUN_JOB, operation

ENV = {"REQUEST_ID": "r1", "REASON": "drift", "WINDOW_END": "2026-05-30"}


def launcher(client, sleeps: list[float] | None = None, attempts: int = 3) -> CloudRunLauncher:
    return CloudRunLauncher(
        JOB,
        client=client,
        attempts=attempts,
        backoff_s=1.0,
        sleep=(sleeps if sleeps is not None else []).append,
    )


def test_run_job_sends_the_overrides_and_returns_the_execution(jobs_client, recorder):
    launched = launcher(jobs_client).launch("r1", ENV)
    assert launched.execution_name == EXECUTION and launched.log_path is None
    (call,) = recorder.calls_to(RUN_JOB)
    request = call.parse(run_v2.RunJobRequest)
    assert request.name == JOB
    (override,) = request.overrides.container_overrides
    assert [(e.name, e.value) for e in override.env] == list(ENV.items())
    # The routing header Cloud Run uses to find the job's region.
    assert ("x-goog-request-params", "location=europe-west1") in call.metadata


def test_without_execution_metadata_the_operation_name_is_kept(jobs_client, recorder):
    answer = operation()
    answer.ClearField("metadata")
    recorder.respond(RUN_JOB, answer)
    assert launcher(jobs_client).launch("r1", ENV).execution_name == f"{JOB}/operations/op-1"


def test_transient_errors_back_off_exponentially(jobs_client, recorder):
    sleeps: list[float] = []
    recorder.respond(RUN_JOB, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, operation())
    assert launcher(jobs_client, sleeps).launch("r1", ENV).execution_name == EXECUTION
    assert len(recorder.calls_to(RUN_JOB)) == 3
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0


@pytest.mark.parametrize(
    ("code", "error", "calls"),
    [
        (grpc.StatusCode.UNAVAILABLE, TransientLaunchError, 2),
        (grpc.StatusCode.DEADLINE_EXCEEDED, TransientLaunchError, 2),
        (grpc.StatusCode.INTERNAL, TransientLaunchError, 2),
        (grpc.StatusCode.PERMISSION_DENIED, PermanentLaunchError, 1),
        (grpc.StatusCode.NOT_FOUND, PermanentLaunchError, 1),
        (grpc.StatusCode.INVALID_ARGUMENT, PermanentLaunchError, 1),
    ],
)
def test_each_error_class(jobs_client, recorder, code, error, calls):
    recorder.respond(RUN_JOB, code)
    with pytest.raises(error, match=f"run_job {JOB}: {code.name}"):
        launcher(jobs_client, attempts=2).launch("r1", ENV)
    assert len(recorder.calls_to(RUN_JOB)) == calls

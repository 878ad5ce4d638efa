"""Fixtures for the train_trigger function: its functions-framework app, and the real
run_v2 client talking to a recording gRPC server."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from functions_framework import create_app
from google.cloud import run_v2
from google.cloud.run_v2.services.jobs.transports import JobsGrpcTransport

from forecastguard.db.engine import make_engine
from forecastguard.launcher import CloudRunLauncher
from forecastguard.trigger import Runtime
from tests.integration.train_trigger.helpers import JOB, RUN_JOB, SOURCE, operation
from tests.support.grpc_recorder import GrpcRecorder


@pytest.fixture
def recorder() -> Iterator[GrpcRecorder]:
    """A recording gRPC server that answers RunJob with an operation (by default)."""
    with GrpcRecorder() as rec:
        rec.respond(RUN_JOB, operation())
        yield rec


@pytest.fixture
def jobs_client(recorder: GrpcRecorder) -> Iterator[run_v2.JobsClient]:
    """The real Cloud Run Admin client, pointed at the recorder."""
    client = run_v2.JobsClient(transport=JobsGrpcTransport(channel=recorder.channel()))
    yield client
    client.transport.close()


@pytest.fixture
def make_runtime(jobs_client) -> Iterator[Callable[..., Runtime]]:
    """Build a Cloud Run runtime on a database URL (fast backoff); engines are disposed."""
    engines = []

    def build(db_url: str, *, timeout_s: int = 3600, attempts: int = 3) -> Runtime:
        engine = make_engine(db_url)
        engines.append(engine)
        launcher = CloudRunLauncher(
            JOB, client=jobs_client, attempts=attempts, backoff_s=0.01, call_timeout_s=10
        )
        return Runtime(engine, launcher, timeout_s)

    yield build
    for engine in engines:
        engine.dispose()


@pytest.fixture
def function() -> Iterator[tuple[Any, Any]]:
    """The functions-framework app of train_trigger and its loaded `main` module."""
    app = create_app("on_retrain_request", str(SOURCE), signature_type="cloudevent")
    module = sys.modules["main"]
    yield app, module
    module.use_runtime(None)

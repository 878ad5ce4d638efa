"""Two deliveries at the same moment, from two threads, on MariaDB: exactly one run."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from forecastguard.db.schema import retrain_requests
from tests.integration.train_trigger.helpers import (
    RUN_JOB,
    deliver,
    load_event,
    operation,
    retrain_event,
)

pytestmark = pytest.mark.mariadb


def slow_operation(_request: bytes) -> Any:
    """Answer RunJob slowly, so that the second delivery arrives while the first starts."""
    time.sleep(0.3)
    return operation()


def deliver_together(app, events: list[dict[str, Any]]) -> list[int]:
    """Deliver the events from one thread each, released at the same instant."""
    barrier = threading.Barrier(len(events))
    codes: list[int] = [0] * len(events)

    def push(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        codes[i] = deliver(client, events[i])

    threads = [threading.Thread(target=push, args=(i,)) for i in range(len(events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return codes


def statuses(engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(retrain_requests.c.request_id, retrain_requests.c.status))
        return dict(rows.all())


@pytest.mark.parametrize("round_", range(3))
def test_the_same_message_delivered_twice_at_once_starts_one_run(
    function, make_runtime, mariadb_url, recorder, round_
):
    app, module = function
    runtime = make_runtime(mariadb_url)
    module.use_runtime(runtime)
    recorder.respond(RUN_JOB, slow_operation)
    event = load_event("retrain_request")

    assert deliver_together(app, [event, event]) == [200, 200]
    assert len(recorder.calls_to(RUN_JOB)) == 1
    assert list(statuses(runtime.engine).values()) == ["started"]


@pytest.mark.parametrize("round_", range(3))
def test_two_requests_at_once_start_one_run_and_queue_the_other(
    function, make_runtime, mariadb_url, recorder, round_
):
    app, module = function
    runtime = make_runtime(mariadb_url)
    module.use_runtime(runtime)
    recorder.respond(RUN_JOB, slow_operation)
    events = [retrain_event("501", request_id="a"), retrain_event("502", request_id="b")]

    assert deliver_together(app, events) == [200, 200]
    assert len(recorder.calls_to(RUN_JOB)) == 1
    assert sorted(statuses(runtime.engine).values()) == ["queued", "started"]

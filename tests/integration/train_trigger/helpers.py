"""Helpers for the train_trigger tests: Pub/Sub-shaped CloudEvents (JSON files under
events/), the RunJob answer, and delivering an event to the function's app."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "functions" / "train_trigger" / "main.py"
EVENTS = Path(__file__).with_name("events")
JOB = "projects/demo-project/locations/europe-west1/jobs/trainer"
RUN_JOB = "/google.cloud.run.v2.Jobs/RunJob"
EXECUTION = f"{JOB}/executions/trainer-x7k2p"
CE_HEADERS = {"Content-Type": "application/cloudevents+json"}


def load_event(name: str) -> dict[str, Any]:
    """A CloudEvent from events/<name>.json."""
    return json.loads((EVENTS / f"{name}.json").read_text())


def payload_of(event: dict[str, Any]) -> dict[str, Any]:
    """The retrain message inside a Pub/Sub CloudEvent."""
    return json.loads(base64.b64decode(event["data"]["message"]["data"]))


def retrain_event(message_id: str, **changes: Any) -> dict[str, Any]:
    """The valid event of events/retrain_request.json with another message id and fields."""
    event = copy.deepcopy(load_event("retrain_request"))
    body = {**payload_of(event), **changes}
    event["id"] = message_id
    message = event["data"]["message"]
    message["messageId"] = message["message_id"] = message_id
    message["data"] = base64.b64encode(json.dumps(body).encode()).decode()
    return event


def operation(execution_name: str = EXECUTION) -> operations_pb2.Operation:
    """What RunJob answers: a long-running operation whose metadata is the Execution."""
    metadata = any_pb2.Any()
    metadata.Pack(run_v2.Execution.pb(run_v2.Execution(name=execution_name)))
    return operations_pb2.Operation(name=f"{JOB}/operations/op-1", metadata=metadata)


def deliver(client: FlaskClient, event: dict[str, Any]) -> int:
    """Push one CloudEvent (structured mode) as Eventarc does; return the HTTP status."""
    return client.post("/", json=event, headers=CE_HEADERS).status_code

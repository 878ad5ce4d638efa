"""The health Cloud Function: thin entry points over forecastguard's health check.

- `health_http`: GET or POST /model/health, optional JSON body (or query) {as_of,
  window_days}, `Authorization: Bearer <token>` (HEALTH_API_TOKEN, or a Google ID token
  for HEALTH_AUDIENCE from a caller in HEALTH_ALLOWED_CALLERS). 200 with the result,
  400 bad parameters, 401 no/wrong token or caller, 404 other paths, 405 other methods,
  413 a body over 64 KiB, 503 database unavailable (or not migrated), 500 a bug. The
  caller is authenticated before the body is read; every request is logged (`request`).
  Where the scheduled checks run on Dataflow (issue 24), it answers with the newest
  stored check (`"stored": true`; 503 with Retry-After before the first one).
- `health_pubsub`: the CloudEvent of the scheduled Pub/Sub message; its data may carry
  {as_of, window_days}. A malformed message is logged and acknowledged (a retry would
  fail the same way); a database failure raises, so Pub/Sub delivers it again; the check
  is stored under the event id, so a redelivery reuses it. With DATAFLOW_TEMPLATE, a
  BigQuery installation's check, or one above HEALTH_MAX_INPROCESS_PRODUCTS products, is
  launched on Dataflow instead (issue 24, docs/scale.md): the event is acknowledged once
  the job is launched; a refused launch is logged (`dataflow launch failed`) and
  acknowledged, a transient failure raises so Pub/Sub delivers it again.

The settings and the authenticator are built when the module loads: a malformed setting
stops the function at start-up with a message naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from datetime import UTC, datetime
from typing import Any

import flask
import functions_framework

from forecastguard.auth import Authenticator, Caller
from forecastguard.db.engine import DatabaseUnavailable, SchemaMissing
from forecastguard.health.dataflow import LaunchError
from forecastguard.health.params import BadRequest, parse_check_params, parse_json
from forecastguard.health.service import NoStoredCheck, get_service
from forecastguard.logs import configure_logging, get_logger

log = get_logger("forecastguard.functions.health")
PATHS = ("/model/health", "/model/health/")
MAX_BODY_BYTES = 64 * 1024

_SETTINGS = get_service().settings  # raises ConfigError naming a malformed variable
configure_logging(_SETTINGS.log_level)
_AUTH = Authenticator.from_settings(_SETTINGS)


def _finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (JSON has no Infinity/NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _reply(status: int, body: dict) -> flask.Response:
    text = json.dumps(_finite(body), default=str, allow_nan=False)
    return flask.Response(text, status, mimetype="application/json")


def _read_body(request: flask.Request) -> bytes | None:
    """The body, at most MAX_BODY_BYTES; None when it is larger."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return None
    data = request.stream.read(MAX_BODY_BYTES + 1)
    return None if len(data) > MAX_BODY_BYTES else data


def _handle(request: flask.Request, fields: dict[str, Any]) -> flask.Response:
    if request.path not in PATHS:
        return _reply(404, {"error": "not found"})
    if request.method not in ("GET", "POST"):
        response = _reply(405, {"error": f"method {request.method} not allowed"})
        response.headers["Allow"] = "GET, POST"
        return response
    caller: Caller | None = _AUTH.authenticate(request.headers.get("Authorization"))
    if caller is None:
        response = _reply(401, {"error": "unauthorized"})
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    fields["caller"] = str(caller)
    try:
        body: Any = request.args.to_dict() or None  # GET, or POST without a body
        if request.method == "POST":
            data = _read_body(request)
            if data is None:
                return _reply(413, {"error": f"the body is larger than {MAX_BODY_BYTES} bytes"})
            if data.strip():
                body = parse_json(data)
        as_of, window_days = parse_check_params(body, datetime.now(UTC).date())
    except BadRequest as exc:
        fields["error"] = str(exc)
        return _reply(400, {"error": str(exc)})
    try:
        result = get_service().answer(as_of, window_days)
    except NoStoredCheck as exc:  # a Dataflow installation before its first stored check
        response = _reply(503, {"error": str(exc)})
        response.headers["Retry-After"] = "3600"
        return response
    except SchemaMissing as exc:
        log.error("database schema missing", extra={"error": str(exc)})
        return _reply(503, {"error": "database schema missing: run `forecastguard db upgrade`"})
    except DatabaseUnavailable as exc:
        log.error("database unavailable", extra={"error": str(exc)})
        return _reply(503, {"error": "database unavailable"})
    fields["check_id"] = result.check_id
    return _reply(200, result.to_dict())


@functions_framework.http
def health_http(request: flask.Request) -> flask.Response:
    """HTTP entry point: run a health check and return its result as JSON."""
    start = time.perf_counter()
    fields: dict[str, Any] = {}
    try:
        response = _handle(request, fields)
    except Exception:
        log.exception("request failed")
        response = _reply(500, {"error": "internal error"})
    log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path[:200],
            "status": response.status_code,
            "duration_s": round(time.perf_counter() - start, 4),
            **fields,
        },
    )
    return response


def _event_params(event: Any) -> tuple[Any, Any]:
    """(as_of, window_days) of a scheduled event; `BadRequest` when malformed."""
    data = event.data
    if isinstance(data, bytes | str):
        data = parse_json(data, "the event data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadRequest("the event data is not a Pub/Sub envelope")
    message = data.get("message") or {}
    if not isinstance(message, dict):
        raise BadRequest("the Pub/Sub message is not an object")
    encoded = message.get("data") or ""
    if not isinstance(encoded, str):
        raise BadRequest("the Pub/Sub message data is not base64 text")
    if len(encoded) > 2 * MAX_BODY_BYTES:
        raise BadRequest(f"the Pub/Sub message data is larger than {MAX_BODY_BYTES} bytes")
    try:
        raw = base64.b64decode(encoded, validate=True).strip()
    except (binascii.Error, ValueError):
        raise BadRequest("the Pub/Sub message data is not valid base64") from None
    body = parse_json(raw, "the message data") if raw else None
    return parse_check_params(body, datetime.now(UTC).date())


@functions_framework.cloud_event
def health_pubsub(event) -> None:
    """CloudEvent entry point for the scheduled Pub/Sub message; data may hold parameters.

    Returns (acknowledges) for a malformed message; raises (Pub/Sub redelivers) when the
    database fails or the retrain request could not be published.
    """
    event_id = str(event["id"])[:128] if event.get("id") else None
    try:
        as_of, window_days = _event_params(event)
    except BadRequest as exc:  # a bad message will not improve on redelivery
        log.error(
            "ignored a malformed health-check request",
            extra={"error": str(exc), "event_id": event_id},
        )
        return
    try:
        result = get_service().run_scheduled(as_of, window_days, event_id=event_id)
    except DatabaseUnavailable as exc:
        log.error(
            "database unavailable, will retry", extra={"error": str(exc), "event_id": event_id}
        )
        raise
    except LaunchError as exc:  # the hand-over to Dataflow (issue 24)
        log.error(
            "dataflow launch failed" + (", will retry" if exc.retryable else ""),
            extra={"error": str(exc), "event_id": event_id, "alert": "health_launch_failed"},
        )
        if exc.retryable:
            raise
        return
    retrain = result.outputs.get("retrain") or {}
    if retrain.get("error"):
        raise RuntimeError(f"retrain request not published: {retrain['error']}")

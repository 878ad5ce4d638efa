"""The health Cloud Function: thin entry points over forecastguard's health check.

- `health_http`: GET or POST /model/health, optional JSON body (or query) {as_of,
  window_days}, `Authorization: Bearer <token>` (HEALTH_API_TOKEN or a Google ID token
  for HEALTH_AUDIENCE). 200 with the result, 400 bad parameters, 401 no/wrong token,
  404 other paths, 405 other methods, 503 database unreachable.
- `health_pubsub`: the CloudEvent of the scheduled Pub/Sub message; its data may carry
  {as_of, window_days}. A failure raises, so Pub/Sub delivers the message again.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from functools import cache

import flask
import functions_framework

from forecastguard.auth import Authenticator
from forecastguard.db.engine import DatabaseUnavailable
from forecastguard.health.params import BadRequest, parse_check_params
from forecastguard.health.service import get_service
from forecastguard.logs import configure_logging, get_logger

log = get_logger("forecastguard.functions.health")
PATHS = ("/model/health", "/model/health/")


@cache
def _authenticator() -> Authenticator:
    """Configure logging and build the authenticator, once per process."""
    settings = get_service().settings
    configure_logging(settings.log_level)
    return Authenticator.from_settings(settings)


def _reply(status: int, body: dict) -> flask.Response:
    return flask.Response(json.dumps(body, default=str), status, mimetype="application/json")


def _handle(request: flask.Request) -> flask.Response:
    if request.path not in PATHS:
        return _reply(404, {"error": "not found"})
    if request.method not in ("GET", "POST"):
        response = _reply(405, {"error": f"method {request.method} not allowed"})
        response.headers["Allow"] = "GET, POST"
        return response
    if not _authenticator().allows(request.headers.get("Authorization")):
        response = _reply(401, {"error": "unauthorized"})
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    try:
        if request.method == "POST" and request.get_data():
            body = request.get_json(force=True, silent=True)
            if body is None:
                raise BadRequest("the body is not valid JSON")
        else:
            body = request.args.to_dict() or None
        as_of, window_days = parse_check_params(body, datetime.now(UTC).date())
    except BadRequest as exc:
        return _reply(400, {"error": str(exc)})
    try:
        result = get_service().run(as_of, window_days)
    except DatabaseUnavailable as exc:
        log.error("database unavailable", extra={"error": str(exc)})
        return _reply(503, {"error": "database unavailable"})
    return _reply(200, result.to_dict())


@functions_framework.http
def health_http(request: flask.Request) -> flask.Response:
    """HTTP entry point: run a health check and return its result as JSON."""
    start = time.perf_counter()
    response = _handle(request)
    log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_s": round(time.perf_counter() - start, 4),
        },
    )
    return response


@functions_framework.cloud_event
def health_pubsub(event) -> None:
    """CloudEvent entry point for the scheduled Pub/Sub message; data may hold parameters."""
    _authenticator()  # logging is configured with it, once
    message = (event.data or {}).get("message") or {}
    try:
        raw = base64.b64decode(message.get("data") or b"", validate=True).strip()
        body = json.loads(raw) if raw else None
        as_of, window_days = parse_check_params(body, datetime.now(UTC).date())
    except (ValueError, BadRequest) as exc:  # a bad message will not improve on redelivery
        log.error("ignored a malformed health-check request", extra={"error": str(exc)})
        return
    result = get_service().run(as_of, window_days)
    retrain = result.outputs.get("retrain") or {}
    if retrain.get("error"):
        raise RuntimeError(f"retrain request not published: {retrain['error']}")

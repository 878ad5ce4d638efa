"""Every bad input to the served functions, table-driven: the status (HTTP) or the
acknowledged, logged rejection (Pub/Sub), the log line, and the database afterwards."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from datetime import date

import pytest
import requests
import sqlalchemy as sa

from forecastguard import retrain
from forecastguard.db.engine import make_engine
from forecastguard.db.schema import predictions, retrain_requests, sales
from forecastguard.health.service import HealthService
from forecastguard.launcher import LocalLauncher
from forecastguard.trigger import Runtime
from tests.faults.conftest import (
    AUTH,
    HEALTH,
    ROOT,
    TOKEN,
    TRAIN_TRIGGER,
    counts,
    fill,
    health_service,
)
from tests.integration.train_trigger.helpers import retrain_event

CE = {"Content-Type": "application/cloudevents+json"}
DEEP = "[" * 20_000 + "]" * 20_000
HUGE = "9" * 5000


@pytest.fixture
def engine(sqlite_url):
    eng = make_engine(sqlite_url)
    fill(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def health(serve, engine) -> str:
    health_service(engine)
    return serve(HEALTH, "health_http", "http")


def _raw(base: str, method: str = "POST", path: str = "/model/health", **kwargs):
    kwargs.setdefault("headers", AUTH)
    return requests.request(method, base + path, timeout=60, **kwargs)


def _json(body: str, **headers: str) -> dict:
    return {
        "data": body.encode("utf-8"),
        "headers": {**AUTH, "Content-Type": "application/json", **headers},
    }


HTTP_CASES = [
    # (id, request kwargs, status, text in the error)
    ("superscript-two", {"params": {"window_days": "²"}}, 400, "window_days must be an integer"),
    ("superscript-json", _json('{"window_days": "²"}'), 400, "window_days must be an integer"),
    ("5000-digits-json", _json('{"window_days": ' + HUGE + "}"), 400, "not usable JSON"),
    ("5000-digits-query", {"params": {"window_days": HUGE}}, 400, "must be an integer"),
    ("float-days", _json('{"window_days": 1e400}'), 400, "must be an integer"),
    ("nan-days", _json('{"window_days": NaN}'), 400, "must be an integer"),
    ("negative-days", _json('{"window_days": -5}'), 400, "between 1 and 366"),
    ("year-one", _json('{"as_of": "0001-01-05"}'), 400, "between 2000-01-01"),
    ("compact-date", _json('{"as_of": "20260530"}'), 400, "as_of must be a date YYYY-MM-DD"),
    ("week-date", _json('{"as_of": "2026-W22-6"}'), 400, "as_of must be a date YYYY-MM-DD"),
    ("no-such-day", _json('{"as_of": "2026-02-30"}'), 400, "as_of must be a date YYYY-MM-DD"),
    ("datetime", _json('{"as_of": "2026-05-30T00:00:00"}'), 400, "as_of must be a date"),
    ("future", _json('{"as_of": "2099-01-01"}'), 400, "in the future"),
    ("query-year-one", {"method": "GET", "params": {"as_of": "0001-01-05"}}, 400, "between"),
    ("deep-array", _json(DEEP), 400, "nested deeper"),
    ("deep-in-object", _json('{"as_of": ' + DEEP + "}"), 400, "nested deeper"),
    ("not-json", _json("{not json"), 400, "not valid JSON"),
    ("not-utf8", {"data": b"\xff\xfe{}", "headers": AUTH}, 400, "not UTF-8"),
    ("array", _json('["2026-05-30"]'), 400, "JSON object"),
    ("unknown-key", _json('{"as_off": "2026-05-30"}'), 400, "unknown parameter"),
    ("too-large", {"data": b" " * (64 * 1024 + 1), "headers": AUTH}, 413, "larger than"),
    ("too-large-unauthenticated", {"data": b"x" * 200_000, "headers": {}}, 401, "unauthorized"),
    ("no-token", {"json": {}, "headers": {}}, 401, "unauthorized"),
    ("wrong-token", {"json": {}, "headers": {"Authorization": "Bearer nope"}}, 401, "unauth"),
    ("token-no-scheme", {"json": {}, "headers": {"Authorization": TOKEN}}, 401, "unauth"),
    ("put", {"method": "PUT"}, 405, "not allowed"),
    ("other-path", {"path": "/model/other"}, 404, "not found"),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "problem"),
    [pytest.param(k, s, p, id=i) for i, k, s, p in HTTP_CASES],
)
def test_bad_http_input(health, engine, caplog, kwargs, status, problem) -> None:
    response = _raw(health, **kwargs)
    assert response.status_code == status, response.text
    assert problem in response.json()["error"]
    (line,) = [r for r in caplog.records if r.getMessage() == "request"]
    assert line.status == status
    if status == 400:
        assert line.error == response.json()["error"]
    assert counts(engine) == (0, 0)  # no check stored


def test_a_bug_is_a_logged_500(health, engine, caplog, monkeypatch) -> None:
    def broken(self, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(HealthService, "run", broken)
    response = _raw(health, json={"as_of": "2026-05-30"})
    assert response.status_code == 500 and response.json() == {"error": "internal error"}
    (line,) = [r for r in caplog.records if r.getMessage() == "request"]
    assert line.status == 500 and line.caller == "api-token"
    assert any(r.getMessage() == "request failed" and r.exc_info for r in caplog.records)


def _pubsub(data: object) -> dict:
    """A scheduled Pub/Sub CloudEvent whose message data is `data` (bytes are encoded)."""
    encoded = base64.b64encode(data).decode() if isinstance(data, bytes) else data
    return {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "//pubsub.googleapis.com/projects/demo/topics/health-check-requests",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "datacontenttype": "application/json",
        "data": {"message": {"data": encoded, "messageId": "evt-1"}},
    }


EVENT_CASES = [
    ("not-base64", _pubsub("!!not base64!!"), "not valid base64"),
    ("not-json", _pubsub(b"not json"), "not valid JSON"),
    ("deep", _pubsub(DEEP.encode()), "nested deeper"),
    ("5000-digits", _pubsub(b'{"window_days": ' + HUGE.encode() + b"}"), "not usable JSON"),
    ("superscript", _pubsub('{"window_days": "²"}'.encode()), "must be an integer"),
    ("year-one", _pubsub(b'{"as_of": "0001-01-05"}'), "between 2000-01-01"),
    ("window-0", _pubsub(b'{"window_days": 0}'), "between 1 and 366"),
    ("data-not-text", _pubsub(12), "not base64 text"),
    ("message-not-object", {**_pubsub(b"{}"), "data": {"message": "x"}}, "not an object"),
]


@pytest.mark.parametrize(
    ("event", "problem"), [pytest.param(e, p, id=i) for i, e, p in EVENT_CASES]
)
def test_bad_scheduled_event_is_acknowledged_and_logged(
    serve, engine, caplog, event, problem
) -> None:
    health_service(engine)
    base = serve(HEALTH, "health_pubsub", "cloudevent")
    assert requests.post(base, json=event, headers=CE, timeout=60).status_code == 200
    (line,) = [r for r in caplog.records if "malformed health-check request" in r.getMessage()]
    assert problem in line.error and line.event_id == "evt-1"
    assert counts(engine) == (0, 0)


def _retrain(message_id: str, **fields: object) -> dict:
    return retrain_event(message_id, **fields)


def _retrain_raw(message_id: str, raw: bytes) -> dict:
    event = retrain_event(message_id)
    event["data"]["message"]["data"] = base64.b64encode(raw).decode()
    return event


RETRAIN_CASES = [
    ("year-one", _retrain("r1", window_start="0001-01-05"), "between 2000-01-01"),
    ("compact-date", _retrain("r2", window_end="20260530"), "YYYY-MM-DD"),
    ("deep", _retrain_raw("r3", DEEP.encode()), "not usable JSON"),
    ("5000-digits", _retrain_raw("r4", b'{"schema_version": ' + HUGE.encode() + b"}"), "JSON"),
    ("not-json", _retrain_raw("r5", b"\xff\xfe"), "not UTF-8 JSON"),
    ("huge-id", _retrain("r6", request_id="x" * 100_000), "request_id must be"),
]


@pytest.mark.parametrize(
    ("event", "problem"), [pytest.param(e, p, id=i) for i, e, p in RETRAIN_CASES]
)
def test_bad_retrain_message_is_a_logged_rejection(
    serve, sqlite_url, tmp_path, caplog, event, problem
) -> None:
    engine = make_engine(sqlite_url)
    launcher = LocalLauncher([sys.executable, "-c", "pass"], log_dir=tmp_path, base_env={})
    base = serve(TRAIN_TRIGGER, "on_retrain_request", "cloudevent")
    sys.modules["main"].use_runtime(Runtime(engine, launcher, 3600))
    try:
        for _ in range(2):  # redelivered: still acknowledged, recorded once
            assert requests.post(base, json=event, headers=CE, timeout=60).status_code == 200
        message_id = event["data"]["message"]["messageId"]
        row = retrain.get(engine, retrain.rejected_key(message_id))
        assert row is not None and row.status == "rejected" and problem in row.error
        with engine.connect() as conn:
            statuses = conn.execute(sa.select(retrain_requests.c.status)).scalars().all()
        assert statuses == ["rejected"]  # nothing started
        logged = [r for r in caplog.records if r.getMessage() == "retrain message rejected"]
        assert logged and problem in logged[0].error
    finally:
        sys.modules["main"].use_runtime(None)
        engine.dispose()


def test_non_finite_and_non_numeric_values_are_reported_per_product(health, engine) -> None:
    with engine.begin() as conn:  # SQLite keeps whatever it is given in a REAL column
        for product, value in (("P01", "inf"), ("P02", "abc"), ("P03", "NaN")):
            conn.execute(
                sa.update(sales)
                .where(sales.c.product_id == product, sales.c.sale_date == date(2026, 5, 29))
                .values(units_sold=sa.literal_column(f"'{value}'") if value != "inf" else 1e999)
            )
        conn.execute(
            sa.update(predictions)
            .where(
                predictions.c.product_id == "P04", predictions.c.target_date == date(2026, 5, 28)
            )
            .values(predicted_units=sa.literal_column("'oops'"))
        )
    response = _raw(health, json={"as_of": "2026-05-30"})
    assert response.status_code == 200

    def refuse(constant: str) -> float:
        raise ValueError(f"invalid JSON constant {constant}")

    body = json.loads(response.text, parse_constant=refuse)  # no Infinity, no NaN
    bad = {b["product_id"]: (b["sales"], b["predictions"]) for b in body["bad_data"]}
    assert bad == {"P01": (1, 0), "P02": (1, 0), "P03": (1, 0), "P04": (0, 1)}
    assert body["n_products"] == 20
    assert all(
        v is None or math.isfinite(v)
        for p in body["products"]
        for v in p.values()
        if isinstance(v, float)
    )
    assert counts(engine) == (1, 20)


def test_empty_and_stale_data_alert_and_request_no_retrain(serve, engine, caplog) -> None:
    # The publisher would fail if asked: nothing may be published for missing data.
    health_service(engine, retrain_topic="http://127.0.0.1:9/never")
    base = serve(HEALTH, "health_http", "http")
    response = _raw(base, json={"as_of": "2026-01-15"})  # before any data exists
    assert response.status_code == 200
    body = response.json()
    assert body["healthy"] is False and "empty" in body["reason_kinds"]
    retrain_outcome = body["retrain"]
    assert retrain_outcome["published"] is False and retrain_outcome["error"] is None
    assert retrain_outcome["alert"] == "health_data_missing"
    alerts = [r for r in caplog.records if getattr(r, "alert", None) == "health_data_missing"]
    assert alerts and alerts[0].levelname == "ERROR"
    assert counts(engine) == (1, 0)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALLOW_UNAUTHENTICATED", "maybe"),
        ("HEALTH_ALLOWED_CALLERS", "not-an-email"),
        ("DB_READ_TIMEOUT_S", "soon"),
    ],
)
@pytest.mark.parametrize("function", ["health", "train_trigger"])
def test_a_malformed_setting_stops_the_function_at_start_up(function, variable, value) -> None:
    source = HEALTH if function == "health" else TRAIN_TRIGGER
    target = "health_http" if function == "health" else "on_retrain_request"
    kind = "http" if function == "health" else "cloudevent"
    code = (
        "from functions_framework import create_app; "
        f"create_app({target!r}, {str(source)!r}, {kind!r})"
    )
    env = {"PATH": "/usr/bin:/bin", variable: value, "PYTHONPATH": str(ROOT / "shared")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode != 0
    assert "ConfigError" in out.stderr and variable in out.stderr

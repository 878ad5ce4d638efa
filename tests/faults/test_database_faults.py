"""The database failing under the served functions: refused, stalled, cut mid-read,
mid-store and at COMMIT (MariaDB behind a TCP proxy), locked (SQLite), not migrated.

Each answers 503 over HTTP (or raises on the Pub/Sub path, so Pub/Sub retries) within
the timeouts, logs the request, leaves nothing half-written, and recovers afterwards.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import sys
import time
import uuid

import pytest
import requests
import sqlalchemy as sa

from forecastguard import retrain
from forecastguard.db.engine import (
    DatabaseUnavailable,
    Timeouts,
    database_error,
    make_engine,
)
from forecastguard.launcher import LocalLauncher
from forecastguard.trigger import Runtime
from tests.faults.conftest import (
    AUTH,
    HEALTH,
    TRAIN_TRIGGER,
    counts,
    fill,
    health_service,
)
from tests.integration.train_trigger.helpers import retrain_event

# Short timeouts, so a stalled database fails the request in seconds.
FAST = {
    "db_connect_timeout_s": 2,
    "db_read_timeout_s": 2,
    "db_write_timeout_s": 2,
    "db_statement_timeout_s": 2.0,
}
BUDGET_S = 15  # far inside the function's timeout (540 s)
CE = {"Content-Type": "application/cloudevents+json"}


def _post(base: str) -> requests.Response:
    return requests.post(
        f"{base}/model/health", json={"as_of": "2026-05-30"}, headers=AUTH, timeout=60
    )


def _request_lines(caplog) -> list:
    return [r for r in caplog.records if r.getMessage() == "request"]


FAULTS = [
    pytest.param("refuse", True, id="refused"),
    pytest.param("stall", True, id="stalled"),
    pytest.param("cut_reply_to", b"group_concat", id="cut-mid-read"),
    pytest.param("cut_before", b"INSERT INTO health_checks", id="cut-at-store"),
    pytest.param("cut_before", b"INSERT INTO health_check_products", id="cut-mid-store"),
    pytest.param("cut_before", b"COMMIT", id="cut-at-commit"),
]


@pytest.mark.mariadb
@pytest.mark.parametrize(("fault", "value"), FAULTS)
def test_http_database_fault_is_503_and_nothing_half_written(
    serve, proxied_mariadb, mariadb_url, caplog, fault, value
) -> None:
    url, proxy = proxied_mariadb
    health_service(database_url=url, **FAST)  # the engine is built from these settings
    base = serve(HEALTH, "health_http", "http")
    assert _post(base).status_code == 200  # a warm pool before the fault
    direct = make_engine(mariadb_url)
    try:
        assert counts(direct) == (1, 20)
        setattr(proxy.faults, fault, value)
        if fault == "refuse":
            proxy.cut_all()  # the pooled connection goes too
        start = time.monotonic()
        response = _post(base)
        elapsed = time.monotonic() - start
        assert response.status_code == 503, response.text
        assert response.json() == {"error": "database unavailable"}
        assert elapsed < BUDGET_S
        assert _request_lines(caplog)[-1].status == 503
        assert any(r.getMessage() == "database unavailable" for r in caplog.records)
        assert counts(direct) == (1, 20)  # nothing half-written

        setattr(proxy.faults, fault, type(value)())  # healed
        proxy.cut_all()
        assert _post(base).status_code == 200
        assert counts(direct) == (2, 40)
    finally:
        direct.dispose()


def _scheduled_event(event_id: str) -> dict:
    data = base64.b64encode(json.dumps({"as_of": "2026-05-30"}).encode()).decode()
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "//pubsub.googleapis.com/projects/demo/topics/health-check-requests",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "datacontenttype": "application/json",
        "data": {"message": {"data": data, "messageId": event_id}},
    }


@pytest.mark.mariadb
def test_pubsub_check_raises_on_a_cut_then_stores_once_on_redelivery(
    serve, proxied_mariadb, mariadb_url
) -> None:
    url, proxy = proxied_mariadb
    health_service(database_url=url, **FAST)
    base = serve(HEALTH, "health_pubsub", "cloudevent")
    event = _scheduled_event("sched-1")
    direct = make_engine(mariadb_url)
    try:
        proxy.faults.cut_before = b"COMMIT"
        assert requests.post(base, json=event, headers=CE, timeout=60).status_code == 500
        assert counts(direct) == (0, 0)  # raised: Pub/Sub redelivers; nothing stored
        proxy.faults.cut_before = None
        for _ in range(3):  # the redelivery, then two more of the same event
            assert requests.post(base, json=event, headers=CE, timeout=60).status_code == 200
        assert counts(direct) == (1, 20)
        with direct.connect() as conn:
            assert conn.execute(sa.text("SELECT event_id FROM health_checks")).scalar() == (
                "sched-1"
            )
        other = _scheduled_event("sched-2")  # another scheduled message: its own check
        assert requests.post(base, json=other, headers=CE, timeout=60).status_code == 200
        assert counts(direct) == (2, 40)
    finally:
        direct.dispose()


@pytest.mark.mariadb
def test_train_trigger_raises_while_the_database_is_down(
    serve, proxied_mariadb, mariadb_url, tmp_path
) -> None:
    url, proxy = proxied_mariadb
    engine = make_engine(url, timeouts=Timeouts(2, 2, 2, 2.0))
    launcher = LocalLauncher(
        [sys.executable, "-c", "pass"], log_dir=tmp_path, base_env={"PATH": "/usr/bin:/bin"}
    )
    base = serve(TRAIN_TRIGGER, "on_retrain_request", "cloudevent")
    sys.modules["main"].use_runtime(Runtime(engine, launcher, 3600))
    event = retrain_event("m-1", request_id="during-outage")
    direct = make_engine(mariadb_url)
    try:
        proxy.faults.refuse = True
        proxy.cut_all()
        start = time.monotonic()
        assert requests.post(base, json=event, headers=CE, timeout=60).status_code == 500
        assert time.monotonic() - start < BUDGET_S
        assert retrain.get(direct, "during-outage") is None
        proxy.faults.refuse = False
        assert requests.post(base, json=event, headers=CE, timeout=60).status_code == 200
        assert retrain.get(direct, "during-outage").status in ("started", "finished")
    finally:
        sys.modules["main"].use_runtime(None)
        engine.dispose()
        direct.dispose()


@pytest.mark.mariadb
def test_statement_timeout_is_set_and_enforced_on_mariadb(mariadb_url) -> None:
    engine = make_engine(mariadb_url, timeouts=Timeouts(2, 30, 30, 1.0))
    try:
        with engine.connect() as conn:
            assert float(conn.execute(sa.text("SELECT @@max_statement_time")).scalar()) == 1.0
        start = time.monotonic()
        with pytest.raises(sa.exc.OperationalError) as caught, engine.connect() as conn:
            conn.execute(sa.text("SELECT SLEEP(5)")).all()
        assert time.monotonic() - start < 10
        assert isinstance(database_error(caught.value), DatabaseUnavailable)
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_missing_tables_are_503_naming_the_upgrade(serve, mariadb_server) -> None:
    name = f"fg_empty_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(mariadb_server + "/")
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    try:
        health_service(database_url=f"{mariadb_server}/{name}", **FAST)
        response = _post(serve(HEALTH, "health_http", "http"))
        assert response.status_code == 503
        assert "run `forecastguard db upgrade`" in response.json()["error"]
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def test_missing_tables_on_sqlite_are_503(serve, tmp_path) -> None:
    health_service(database_url=f"sqlite:///{tmp_path / 'empty.db'}", **FAST)
    response = _post(serve(HEALTH, "health_http", "http"))
    assert response.status_code == 503
    assert "run `forecastguard db upgrade`" in response.json()["error"]


def test_a_locked_sqlite_file_is_503_and_nothing_written(serve, sqlite_url, caplog) -> None:
    engine = make_engine(sqlite_url)
    fill(engine)
    engine.dispose()
    health_service(database_url=sqlite_url, **{**FAST, "db_statement_timeout_s": 1.0})
    base = serve(HEALTH, "health_http", "http")
    path = sa.make_url(sqlite_url).database
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        response = _post(base)
        assert response.status_code == 503 and time.monotonic() - start < BUDGET_S
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    check = make_engine(sqlite_url)
    try:
        assert counts(check) == (0, 0)
        assert _post(base).status_code == 200
        assert counts(check) == (1, 20)
    finally:
        check.dispose()


class _LocalConnector:
    """In place of google.cloud.sql.connector.Connector (it needs Google credentials and
    a Cloud SQL instance): records what `make_engine` passes, and connects pymysql to the
    local MariaDB as the connector's pymysql path does (`timeout` -> `connect_timeout`)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.calls: list[tuple[str, str, dict]] = []

    def connect(self, instance: str, driver: str, **kwargs):
        import pymysql

        self.calls.append((instance, driver, dict(kwargs)))
        args = dict(kwargs)
        args["connect_timeout"] = args.pop("timeout")
        args["database"] = args.pop("db")
        args.pop("enable_iam_auth")
        args.pop("ip_type")  # the connector's choice of address, not a pymysql argument
        return pymysql.connect(host=self.host, port=self.port, **args)


@pytest.mark.mariadb
def test_cloud_sql_connections_get_the_timeouts(mariadb_url, monkeypatch) -> None:
    import forecastguard.db.engine as engine_module
    from forecastguard.config import Settings

    url = sa.make_url(mariadb_url)
    connector = _LocalConnector(url.host or "127.0.0.1", url.port or 3306)
    monkeypatch.setattr(engine_module, "_connector", connector)
    settings = Settings.from_env(
        {},
        cloud_sql_instance="demo-project:europe-west1:forecastguard",
        db_user=url.username or "root",
        db_name=url.database,
        db_iam_auth=True,
        db_connect_timeout_s=3,
        db_read_timeout_s=7,
        db_write_timeout_s=8,
        db_statement_timeout_s=4.0,
    )
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            limit = float(conn.execute(sa.text("SELECT @@max_statement_time")).scalar())
    finally:
        engine.dispose()
    assert limit == 4.0
    instance, driver, kwargs = connector.calls[0]
    assert (instance, driver) == ("demo-project:europe-west1:forecastguard", "pymysql")
    assert (kwargs["timeout"], kwargs["read_timeout"], kwargs["write_timeout"]) == (3, 7, 8)
    assert kwargs["ip_type"].name == "PUBLIC"  # DB_IP_TYPE's default

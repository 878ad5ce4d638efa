"""health_http through the functions-framework test client: every status it answers."""

from __future__ import annotations

import json
import logging

import pytest
import sqlalchemy as sa

from forecastguard.db.engine import make_engine
from forecastguard.db.schema import health_checks
from tests.integration.health.conftest import TOKEN, app, use_service

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(filled_engine):
    use_service(filled_engine)
    return app("health_http", "http").test_client()


def test_post_runs_a_check_and_returns_the_result(client, filled_engine) -> None:
    response = client.post(
        "/model/health", json={"as_of": "2026-05-30", "window_days": 30}, headers=AUTH
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["healthy"] is True and body["n_products"] == 20
    assert body["window_start"] == "2026-05-01" and body["window_end"] == "2026-05-30"
    assert len(body["products"]) == 20 and body["products"][0]["product_id"] == "P00"
    with filled_engine.connect() as conn:
        assert conn.execute(sa.select(health_checks.c.id)).scalar() == body["check_id"]


def test_get_with_query_parameters(client) -> None:
    response = client.get("/model/health?as_of=2026-05-30&window_days=14", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["window_start"] == "2026-05-17"


def test_post_without_body_uses_the_defaults(client) -> None:
    response = client.post("/model/health", headers=AUTH)
    assert response.status_code == 200
    body = response.get_json()  # yesterday: no data there, so an empty (and stale) window
    assert body["healthy"] is False and "empty" in body["reason_kinds"]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"data": "{not json", "content_type": "application/json"}, "not valid JSON"),
        ({"json": {"as_of": "yesterday"}}, "as_of must be a date"),
        ({"json": {"window_days": 1000}}, "between 1 and 366"),
        ({"json": {"as_of": "2099-01-01"}}, "in the future"),
        ({"json": ["2026-05-30"]}, "JSON object"),
    ],
)
def test_bad_parameters_are_400_naming_the_problem(client, kwargs, problem) -> None:
    response = client.post("/model/health", headers=AUTH, **kwargs)
    assert response.status_code == 400
    assert problem in response.get_json()["error"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
)
def test_missing_or_wrong_token_is_401_without_detail(client, headers) -> None:
    response = client.post("/model/health", json={}, headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_405(client, method) -> None:
    response = getattr(client, method)("/model/health", headers=AUTH)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"


def test_other_paths_are_404(client) -> None:
    assert client.post("/model/other", headers=AUTH).status_code == 404


def test_unreachable_database_is_503() -> None:
    engine = make_engine("mysql+pymysql://fg:fg@127.0.0.1:9/nowhere")
    use_service(engine)
    client = app("health_http", "http").test_client()
    response = client.post("/model/health", json={"as_of": "2026-05-30"}, headers=AUTH)
    assert response.status_code == 503
    assert response.get_json() == {"error": "database unavailable"}


def test_each_request_is_logged(client, caplog) -> None:
    with caplog.at_level(logging.INFO):
        client.post("/model/health", json={"as_of": "2026-05-30"}, headers=AUTH)
        client.post("/model/health", json={}, headers={})
    requests = [r for r in caplog.records if r.getMessage() == "request"]
    assert [(r.method, r.path, r.status) for r in requests] == [
        ("POST", "/model/health", 200),
        ("POST", "/model/health", 401),
    ]
    assert all(r.duration_s >= 0 for r in requests)
    checks = [r for r in caplog.records if r.getMessage() == "health check"]
    assert len(checks) == 1 and checks[0].duration_s > 0 and checks[0].n_products == 20
    json.dumps(checks[0].__dict__, default=str)  # the JSON formatter can serialise it


def test_open_endpoint_when_allowed(filled_engine) -> None:
    use_service(filled_engine, health_api_token=None, allow_unauthenticated=True)
    client = app("health_http", "http").test_client()
    assert client.post("/model/health", json={"as_of": "2026-05-30"}).status_code == 200


def test_closed_endpoint_without_any_credential_configured(filled_engine) -> None:
    use_service(filled_engine, health_api_token=None)
    client = app("health_http", "http").test_client()
    response = client.post("/model/health", json={}, headers={"Authorization": "Bearer x"})
    assert response.status_code == 401

"""The scheduled check's hand-over to Dataflow (issue 24): the health function, served by
functions-framework, launches the Flex Template through the real Dataflow client talking
gRPC to a recording server (what would go over the wire to Google)."""

from __future__ import annotations

import json

import grpc
import pytest
import sqlalchemy as sa
from google.cloud import dataflow_v1beta3 as dataflow
from google.cloud.dataflow_v1beta3.services.flex_templates_service.transports import (
    FlexTemplatesServiceGrpcTransport,
)

from forecastguard.db.schema import health_checks
from forecastguard.health.dataflow import FORWARDED, job_name
from tests.integration.health.conftest import AS_OF, EVENTS, app, use_service
from tests.support.grpc_recorder import GrpcRecorder

LAUNCH = "/google.dataflow.v1beta3.FlexTemplatesService/LaunchFlexTemplate"
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
TEMPLATE = "gs://fg-artifacts/fg/dataflow/templates/health_beam.json"
PASSWORD = "not-for-dataflow-!"
# A Cloud SQL installation with every setting the pipeline needs (issue 24, gap 2).
CLOUD = {
    "dataflow_template": TEMPLATE,
    "dataflow_region": "europe-west1",
    "dataflow_service_account": "fg-dataflow@demo-project.iam.gserviceaccount.com",
    "dataflow_temp_location": "gs://fg-artifacts/fg/dataflow/temp",
    "gcp_project": "demo-project",
    "cloud_sql_instance": "demo-project:europe-west1:forecastguard",
    "db_user": "health",
    "db_name": "forecastguard",
    "db_pass": PASSWORD,
    "db_pass_secret": "forecastguard-db-pass",
    "db_ip_type": "PRIVATE",
    "metrics_sink": "cloud-monitoring",
    "artifact_uri": "gs://fg-artifacts/fg",
    "retrain_topic": "projects/demo-project/topics/retrain-requests",
    "reference_days": "90",
}


def _client(rec: GrpcRecorder) -> dataflow.FlexTemplatesServiceClient:
    return dataflow.FlexTemplatesServiceClient(
        transport=FlexTemplatesServiceGrpcTransport(channel=rec.channel())
    )


def _post(event_file: str = "scheduled_with_window.json"):
    event = json.loads((EVENTS / event_file).read_text())
    client = app("health_pubsub", "cloudevent").test_client()
    return event, client.post("/", json=event, headers=STRUCTURED)


def _stored(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(sa.select(health_checks.c.id)).all())


def _service(engine: sa.Engine, rec: GrpcRecorder, **settings: object):
    service = use_service(engine, **settings)
    service.dataflow = _client(rec)
    return service


def test_a_check_above_the_size_is_launched_with_every_parameter(filled_engine, caplog) -> None:
    caplog.set_level("INFO")
    with GrpcRecorder() as rec:
        rec.respond(
            LAUNCH,
            dataflow.LaunchFlexTemplateResponse(job=dataflow.Job(id="2026-05-31_01_02_03-42")),
        )
        _service(filled_engine, rec, **CLOUD, health_max_inprocess_products=19)  # 20 here
        event, response = _post()
        calls = rec.calls_to(LAUNCH)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert _stored(filled_engine) == 0  # the job stores the result, not the function
    (call,) = calls
    assert PASSWORD not in call.request.decode("latin-1")
    request = call.parse(dataflow.LaunchFlexTemplateRequest)
    assert request.project_id == "demo-project" and request.location == "europe-west1"
    p = request.launch_parameter
    assert p.container_spec_gcs_path == TEMPLATE
    assert p.job_name == job_name(AS_OF, event["id"])
    assert p.environment.service_account_email == CLOUD["dataflow_service_account"]
    assert p.environment.temp_location == CLOUD["dataflow_temp_location"]
    expected = {
        "source": "cloudsql",
        "as_of": AS_OF.isoformat(),
        "window_days": "30",
        "db_iam_auth": "false",
        **{k: str(v) for k, v in CLOUD.items() if k in FORWARDED},
    }
    assert dict(p.parameters) == expected
    assert set(FORWARDED) <= set(expected)
    done = [r for r in caplog.records if r.getMessage() == "health check handed to dataflow"]
    assert done and done[0].job_id == "2026-05-31_01_02_03-42"


def test_a_check_below_the_size_runs_in_process(filled_engine) -> None:
    with GrpcRecorder() as rec:
        in_process = {**CLOUD, "metrics_sink": None}  # no Cloud Monitoring from a test
        _service(filled_engine, rec, **in_process, health_max_inprocess_products=20)
        _, response = _post()
        assert rec.calls_to(LAUNCH) == []
    assert response.status_code == 200
    assert _stored(filled_engine) == 1


def test_a_bigquery_installation_always_goes_to_dataflow(filled_engine) -> None:
    with GrpcRecorder() as rec:
        rec.respond(LAUNCH, dataflow.LaunchFlexTemplateResponse(job=dataflow.Job(id="j1")))
        _service(
            filled_engine,
            rec,
            **CLOUD,
            bigquery_url="bigquery://demo-project/forecastguard",
            health_max_inprocess_products=1_000_000,
        )
        _, response = _post()
        (call,) = rec.calls_to(LAUNCH)
    assert response.status_code == 200
    params = call.parse(dataflow.LaunchFlexTemplateRequest).launch_parameter.parameters
    assert params["source"] == "bigquery://demo-project/forecastguard"
    assert _stored(filled_engine) == 0


def test_with_iam_login_the_workers_log_in_as_their_own_account() -> None:
    """DB_IAM_AUTH: the job's db_user is the worker account's IAM user (terraform/dataflow.tf
    creates it), not the launching function's; with a password, the function's DB_USER."""
    from datetime import date

    from forecastguard.config import Settings
    from forecastguard.health.dataflow import build_launch

    drop = ("db_pass", "db_pass_secret", "db_user")
    base = {k: v for k, v in CLOUD.items() if k not in drop}
    iam = Settings.from_env({}, **base, db_iam_auth=True, db_user="fg-health")
    params = build_launch(iam, date(2026, 5, 30)).parameters
    assert params["db_user"] == "fg-dataflow" and params["db_iam_auth"] == "true"
    password = Settings.from_env({}, **base, db_user="forecastguard")
    assert build_launch(password, date(2026, 5, 30)).parameters["db_user"] == "forecastguard"


def test_a_redelivered_event_finds_its_job_running(filled_engine, caplog) -> None:
    caplog.set_level("INFO")
    with GrpcRecorder() as rec:
        rec.respond(LAUNCH, grpc.StatusCode.ALREADY_EXISTS)
        _service(filled_engine, rec, **CLOUD, health_max_inprocess_products=1)
        _, response = _post()
    assert response.status_code == 200
    assert any(r.getMessage() == "dataflow job already launched" for r in caplog.records)


def test_a_refused_launch_is_logged_and_acknowledged(filled_engine, caplog) -> None:
    with GrpcRecorder() as rec:
        rec.respond(LAUNCH, grpc.StatusCode.PERMISSION_DENIED)
        _service(filled_engine, rec, **CLOUD, health_max_inprocess_products=1)
        _, response = _post()
    assert response.status_code == 200  # acknowledged: a retry would be refused too
    (record,) = [r for r in caplog.records if r.getMessage() == "dataflow launch failed"]
    assert "refused" in record.error and "403" in record.error
    assert record.alert == "health_launch_failed"
    assert _stored(filled_engine) == 0


def test_an_unavailable_dataflow_is_retried(filled_engine, caplog) -> None:
    with GrpcRecorder() as rec:
        rec.respond(LAUNCH, grpc.StatusCode.UNAVAILABLE)
        _service(filled_engine, rec, **CLOUD, health_max_inprocess_products=1)
        _, response = _post()
    assert response.status_code == 500  # Pub/Sub delivers the event again
    assert any(r.getMessage() == "dataflow launch failed, will retry" for r in caplog.records)


@pytest.mark.parametrize("missing", ["gcp_project", "cloud_sql_instance"])
def test_settings_that_cannot_launch_keep_the_check_in_process(
    filled_engine, caplog, missing
) -> None:
    settings = {k: v for k, v in CLOUD.items() if k not in (missing, "metrics_sink")}
    with GrpcRecorder() as rec:
        _service(filled_engine, rec, **settings, health_max_inprocess_products=1)
        _, response = _post()
        assert rec.calls_to(LAUNCH) == []
    assert response.status_code == 200 and _stored(filled_engine) == 1
    (record,) = [r for r in caplog.records if "cannot be handed to dataflow" in r.getMessage()]
    assert missing.upper() in record.error


@pytest.fixture
def secret_manager():
    """A local HTTP server answering Secret Manager's `versions/latest:access`."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            known = (
                self.path == "/v1/projects/demo-project/secrets/fg-db-pass/versions/latest:access"
            )
            body = {"payload": {"data": base64.b64encode(PASSWORD.encode()).decode()}}
            text = json.dumps(body if known else {"error": {"code": 404}}).encode()
            self.send_response(200 if known else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def test_the_worker_reads_the_password_from_secret_manager(secret_manager) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.auth.transport.requests import AuthorizedSession

    from forecastguard.config import ConfigError, Settings
    from forecastguard.health.dataflow import with_db_pass

    endpoint, seen = secret_manager
    session = AuthorizedSession(AnonymousCredentials())
    settings = Settings.from_env({}, gcp_project="demo-project", db_pass_secret="fg-db-pass")
    assert with_db_pass(settings, session, endpoint).db_pass == PASSWORD
    assert seen == ["/v1/projects/demo-project/secrets/fg-db-pass/versions/latest:access"]
    # Not asked for with IAM authentication, nor when the password is given.
    for given in ({"db_iam_auth": True}, {"db_pass": "given"}):
        same = Settings.from_env({}, **{**settings.__dict__, **given})
        assert with_db_pass(same, session, endpoint) is same
    assert len(seen) == 1
    missing = Settings.from_env({}, gcp_project="demo-project", db_pass_secret="other")
    with pytest.raises(ConfigError, match=r"DB_PASS_SECRET 'other'.*HTTP 404"):
        with_db_pass(missing, session, endpoint)


def test_the_https_endpoint_of_a_dataflow_installation_answers_the_stored_check(
    filled_engine,
) -> None:
    """/model/health neither reads a data plane the function does not hold nor launches a
    job per request: it answers with the newest stored check of that window."""
    bigquery = {**CLOUD, "bigquery_url": "bigquery://demo-project/forecastguard"}
    auth = {"Authorization": "Bearer " + str(use_service(filled_engine).settings.health_api_token)}
    day = AS_OF.isoformat()
    with GrpcRecorder() as rec:
        _service(filled_engine, rec, **bigquery)
        client = app("health_http", "http").test_client()
        before = client.get(f"/model/health?as_of={day}&window_days=30", headers=auth)
        # The scheduled Dataflow check stores its result (here: one computed in-process).
        stored = use_service(filled_engine).run(AS_OF, 30)
        _service(filled_engine, rec, **bigquery)
        after = client.get(f"/model/health?as_of={day}&window_days=30", headers=auth)
        other_window = client.get(f"/model/health?as_of={day}&window_days=14", headers=auth)
        earlier = client.get("/model/health?as_of=2026-05-01&window_days=30", headers=auth)
        assert rec.calls_to(LAUNCH) == []
    assert before.status_code == 503 and before.headers["Retry-After"] == "3600"
    assert "run on Dataflow" in before.get_json()["error"]
    assert after.status_code == 200, after.get_data(as_text=True)
    body = after.get_json()
    assert body["stored"] is True and body["check_id"] == stored.check_id
    assert body["healthy"] is stored.healthy and "products" not in body
    assert other_window.status_code == 503 and earlier.status_code == 503
    assert _stored(filled_engine) == 1  # answering stores nothing


def test_the_https_endpoint_below_the_size_still_checks_in_process(filled_engine) -> None:
    with GrpcRecorder() as rec:
        service = _service(filled_engine, rec, **{**CLOUD, "metrics_sink": None})
        auth = {"Authorization": f"Bearer {service.settings.health_api_token}"}
        client = app("health_http", "http").test_client()
        response = client.get(f"/model/health?as_of={AS_OF.isoformat()}", headers=auth)
    assert response.status_code == 200
    body = response.get_json()
    assert "stored" not in body and len(body["products"]) == 20
    assert _stored(filled_engine) == 1

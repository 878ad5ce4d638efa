"""The check writes its report to a gs:// ARTIFACT_URI (the real google-cloud-storage
client against gcp-storage-emulator), and the pages server reads it back from there."""

from __future__ import annotations

from datetime import date

from forecastguard.health.check import HealthParams, compute_health
from forecastguard.report.app import create_app
from forecastguard.report.check_page import LATEST_KEY, attach_report, report_key
from forecastguard.storage import open_store
from tests.integration.health.synthetic import synthetic_window
from tests.integration.trainer2.conftest import gcs_client, gcs_emulator  # noqa: F401


def test_the_report_goes_to_the_bucket_as_html(gcs_client) -> None:  # noqa: F811
    data = synthetic_window(30, date(2026, 5, 30), seed=6, drift_share=0.2)
    result = compute_health(data, HealthParams())
    result.check_id = "gcs-check"
    store = open_store("gs://fg-artifacts/prod", client=gcs_client)
    uri = attach_report("gs://fg-artifacts/prod", result, data, store=store)
    assert uri == "gs://fg-artifacts/prod/health/gcs-check/report.html"
    assert result.outputs["report_url"] == (
        "https://storage.cloud.google.com/fg-artifacts/prod/health/gcs-check/report.html"
    )
    bucket = gcs_client.bucket("fg-artifacts")
    for key in (report_key("gcs-check"), LATEST_KEY):
        blob = bucket.get_blob(f"prod/{key}")
        assert blob.content_type.startswith("text/html")
    assert b'id="verdict">UNHEALTHY<' in store.read_bytes(report_key("gcs-check"))


def test_the_pages_read_reports_from_the_bucket(gcs_client, sqlite_url) -> None:  # noqa: F811
    from forecastguard.config import Settings
    from forecastguard.db.engine import make_engine
    from forecastguard.health.service import HealthService
    from tests.integration.health.synthetic import frames, write

    engine = make_engine(sqlite_url)
    write(engine, *frames(synthetic_window(20, date(2026, 5, 30), seed=6, drift_share=0.2)))
    store = open_store("gs://fg-artifacts/prod", client=gcs_client)
    service = HealthService(Settings.from_env({}), engine=engine)
    result = service.run(date(2026, 5, 30), 30)  # no ARTIFACT_URI: no report yet
    assert "report_uri" not in result.outputs
    attach_report("gs://fg-artifacts/prod", result, None, store=store)
    answer = create_app(engine, store=store).test_client().get(f"/checks/{result.check_id}")
    assert answer.status_code == 200 and b'id="verdict"' in answer.data

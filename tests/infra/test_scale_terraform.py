"""The scale path's Terraform (issue 24): BigQuery tables that are the library's, the
Dataflow Flex Template launched daily as least-privilege accounts, alerts, and nothing of
it in a small installation (scale_enabled off)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from forecastguard.bigquery import TABLES
from tests.infra.hcl import TERRAFORM_DIR, Terraform, load

ROOT = TERRAFORM_DIR.parent
SCALE_FILES = ("bigquery.tf", "dataflow.tf")


@pytest.fixture(scope="module")
def tf() -> Terraform:
    return load()


def test_tables_are_the_librarys_partitioned_and_clustered(tf: Terraform) -> None:
    tables = tf.local_map("bigquery_tables")
    assert set(tables) == set(TABLES)
    for name, (columns, partition, clustering) in TABLES.items():
        body = tables[name]
        assert [tuple(c) for c in body["columns"]] == list(columns), name
        assert body["partition"] == partition and tuple(body["cluster"]) == clustering, name
    table = tf.resource("google_bigquery_table", "scale")
    assert table["time_partitioning"][0]["field"] == "${each.value.partition}"
    assert table["time_partitioning"][0]["type"] == "DAY"
    assert table["clustering"] == "${each.value.cluster}"


def test_everything_of_the_scale_path_is_off_by_default(tf: Terraform) -> None:
    assert tf.variables["scale_enabled"]["default"] is False
    for name in SCALE_FILES:
        text = (TERRAFORM_DIR / name).read_text(encoding="utf-8")
        for block in text.split("\nresource ")[1:]:
            head = block.split("\n", 1)[0]
            assert "var.scale_enabled" in block.split("\n}\n", 1)[0] or "local.scale" in block, (
                f"{name}: resource {head} exists without scale_enabled"
            )


def test_the_schedule_launches_the_flex_template_as_the_worker_account(tf: Terraform) -> None:
    job = tf.resource("google_cloud_scheduler_job", "health_check_dataflow")
    target = job["http_target"][0]
    assert target["uri"].endswith("/flexTemplates:launch")
    body = target["body"]
    assert "local.dataflow_template_spec" in body and "local.bigquery_url" in body
    assert "google_service_account.dataflow[0].email" in body
    assert "WORKER_IP_PRIVATE" in body
    assert target["oauth_token"][0]["service_account_email"] == (
        '${google_service_account.component["scheduler"].email}'
    )
    assert tf.locals["bigquery_url"] == "bigquery://${var.project_id}/${var.bigquery_dataset_id}"


def test_a_failed_or_late_job_alerts(tf: Terraform) -> None:
    policy = tf.resource("google_monitoring_alert_policy", "dataflow")
    filters = [c["condition_threshold"][0]["filter"] for c in policy["conditions"]]
    assert any("dataflow.googleapis.com/job/is_failed" in f for f in filters)
    late = [c for c in policy["conditions"] if "job/elapsed_time" in str(c)]
    assert late and late[0]["condition_threshold"][0]["threshold_value"] == (
        "${var.dataflow_max_minutes * 60}"
    )


def test_the_template_spec_is_where_cloud_build_writes_it(tf: Terraform) -> None:
    build = yaml.safe_load((ROOT / "jobs/health_beam/cloudbuild.yaml").read_text())
    [step] = [s for s in build["steps"] if s["id"] == "flex-template"]
    spec = step["args"][3]
    assert spec.endswith("/dataflow/templates/health_beam.json")
    assert tf.locals["dataflow_template_spec"] == (
        "gs://${local.artifact_bucket_name}/${local.dataflow_prefix}templates/health_beam.json"
    )
    assert tf.locals["dataflow_prefix"] == "${var.artifact_prefix}/dataflow/"
    assert (
        spec == "gs://${_ARTIFACT_BUCKET}/${_ARTIFACT_PREFIX}/dataflow/templates/health_beam.json"
    )
    assert "--metadata-file=jobs/health_beam/metadata.json" in step["args"]
    metadata = json.loads(Path(ROOT / "jobs/health_beam/metadata.json").read_text())
    names = {p["name"] for p in metadata["parameters"]}
    assert {"source", "batch_size"} <= names
    body = tf.resource("google_cloud_scheduler_job", "health_check_dataflow")["http_target"][0]
    assert "batch_size" in body["body"] and "source" in body["body"]


def test_the_schedule_passes_every_setting_the_pipeline_needs(tf: Terraform) -> None:
    """The control database (never its password: the secret's name), the metrics sink,
    the report location, the retrain topic: every setting the function's own launch
    forwards (forecastguard.health.dataflow.FORWARDED) and that Terraform knows."""
    from forecastguard.health.dataflow import FORWARDED

    job = tf.resource("google_cloud_scheduler_job", "health_check_dataflow")
    body = job["http_target"][0]["body"]
    metadata = json.loads(Path(ROOT / "jobs/health_beam/metadata.json").read_text())
    declared = {p["name"] for p in metadata["parameters"]}
    # REFERENCE_DAYS is not wired on Google Cloud (infra_contract): the default applies.
    for name in set(FORWARDED) - {"reference_days"}:
        assert f"{name} " in body or f"{name} =" in body, name
        assert name in declared, name
    assert "db_pass_secret" in body and 'secret["db-pass"].secret_id' in body
    assert "DB_PASS" not in body and "password" not in body.lower()
    assert "google_pubsub_topic.retrain.id" in body and "cloud-monitoring" in body
    grant = tf.resource("google_secret_manager_secret_iam_member", "dataflow_reads_db_pass")
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert grant["secret_id"] == '${google_secret_manager_secret.secret["db-pass"].secret_id}'
    assert grant["member"] == "${google_service_account.dataflow[0].member}"

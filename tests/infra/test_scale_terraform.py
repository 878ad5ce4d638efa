"""The scale path's Terraform and Cloud Build (issue 24): BigQuery tables that are the
library's; ONE scheduled path, the health function choosing the engine and launching the
Flex Template as least-privilege accounts; the template image built by the plan build and
named by digest in the spec Terraform writes; the workers' Cloud SQL IAM user; the
trainer's BigQuery forecasts; alerts; and nothing of it in a small installation."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from forecastguard.bigquery import TABLES
from forecastguard.config import Settings
from tests.infra import infra_contract as contract
from tests.infra.hcl import TERRAFORM_DIR, Terraform, load
from tests.infra.test_terraform_wiring import function_env, iam_grants, trainer_env

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


def _blocks(text: str) -> list[tuple[str, str]]:
    """(head, body) of each top-level resource block of a .tf file."""
    found = []
    for block in text.split("\nresource ")[1:]:
        head, rest = block.split("\n", 1)
        found.append((head, rest.split("\n}\n", 1)[0]))
    return found


def test_everything_of_the_scale_path_is_off_by_default(tf: Terraform) -> None:
    assert tf.variables["scale_enabled"]["default"] is False
    gates = ("var.scale_enabled", "local.scale", "local.bigquery_installation")
    for name in SCALE_FILES:
        for head, block in _blocks((TERRAFORM_DIR / name).read_text(encoding="utf-8")):
            assert any(g in block for g in gates), f"{name}: {head} exists without scale_enabled"
    assert tf.locals["bigquery_installation"] == (
        '${var.scale_enabled && var.scale_data_plane == "bigquery"}'
    )
    # Off, the function's hand-over settings are all empty (unset: in-process).
    env = tf.local_map("health_scale_env")
    for name, value in env.items():
        assert re.fullmatch(
            r'\$\{(var\.scale_enabled|local\.bigquery_installation)\b.* : ""\}', value
        ), (
            name,
            value,
        )


def test_one_scheduled_path_the_function_picks_the_engine(tf: Terraform) -> None:
    """Never two checks for one day: nothing in Terraform launches the template itself;
    the daily schedule publishes to the health topic and health_pubsub chooses (in-process,
    or Dataflow: always on BigQuery, above the size on Cloud SQL)."""
    text = "\n".join(tf.texts.values())
    assert "flexTemplates:launch" not in text
    assert set(tf.resources["google_cloud_scheduler_job"]) == {"health_check", "daily_forecast"}
    pubsub, _, _ = function_env(tf, "health_pubsub")
    http, _, _ = function_env(tf, "health_http")
    assert pubsub["DATAFLOW_TEMPLATE"] == '${var.scale_enabled ? local.dataflow_template_spec : ""}'
    assert pubsub["DATAFLOW_SERVICE_ACCOUNT"] == (
        '${var.scale_enabled ? one(google_service_account.dataflow[*].email) : ""}'
    )
    assert pubsub["DATAFLOW_REGION"] == '${var.scale_enabled ? var.region : ""}'
    assert pubsub["DATAFLOW_TEMP_LOCATION"] == (
        '${var.scale_enabled ? local.dataflow_temp_location : ""}'
    )
    assert tf.locals["dataflow_temp_location"].endswith("${local.dataflow_prefix}temp")
    assert pubsub["HEALTH_MAX_INPROCESS_PRODUCTS"] == (
        '${var.scale_enabled ? tostring(var.health_max_inprocess_products) : ""}'
    )
    assert pubsub["BIGQUERY_URL"] == '${local.bigquery_installation ? local.bigquery_url : ""}'
    assert tf.locals["bigquery_url"] == "bigquery://${var.project_id}/${var.bigquery_dataset_id}"
    # The secret's name for the workers, never the password; none with IAM login.
    assert pubsub["DB_PASS_SECRET"] == (
        "${var.scale_enabled && !var.db_iam_auth ? "
        'google_secret_manager_secret.secret["db-pass"].secret_id : ""}'
    )
    # The HTTPS endpoint knows where the checks run (to answer with the stored one) but
    # launches nothing: none of the launch's settings.
    for name in ("DATAFLOW_TEMPLATE", "HEALTH_MAX_INPROCESS_PRODUCTS", "BIGQUERY_URL"):
        assert http[name] == pubsub[name], name
    launch = {"DATAFLOW_REGION", "DATAFLOW_SERVICE_ACCOUNT", "DATAFLOW_TEMP_LOCATION"}
    assert not launch & set(http) and "DB_PASS_SECRET" not in http
    plane = tf.variables["scale_data_plane"]
    assert plane["default"] == "bigquery" and "cloudsql" in str(plane["validation"])
    assert tf.variables["health_max_inprocess_products"]["default"] == (
        Settings.__dataclass_fields__["health_max_inprocess_products"].default
    )


def test_the_health_account_launches_as_the_worker_account(tf: Terraform) -> None:
    grants = {(r, t) for p, r, t in iam_grants(tf) if p == "health"}
    assert ("roles/dataflow.developer", "project") in grants
    assert ("roles/iam.serviceAccountUser", "service_account:dataflow") in grants
    assert ("roles/storage.objectViewer", "storage_bucket:artifacts?dataflow-templates") in grants
    assert tf.locals["dataflow_templates_object"] == "${local.dataflow_prefix_object}templates/"
    # The workers write temp and staging files, never the spec they are launched from.
    work = tf.resource("google_storage_bucket_iam_member", "dataflow_temp")["condition"][0]
    assert "templates" not in work["expression"] and "staging" in work["expression"]
    assert tf.locals["dataflow_temp_location"].startswith("gs://${local.artifact_bucket_name}/")
    assert tf.locals["dataflow_staging_location"].endswith("${local.dataflow_prefix}staging")
    # Only the health account launches: the scheduler has no Dataflow role any more.
    assert not {g for g in iam_grants(tf) if g[0] == "scheduler" and "dataflow" in g[2] + g[1]}
    # The function may launch from its first event: the spec and every grant first.
    deps = str(tf.resource("google_cloudfunctions2_function", "health_pubsub")["depends_on"])
    assert "google_storage_bucket_object.dataflow_template" in deps
    assert "time_sleep.iam_propagation" in deps


def test_every_scale_grant_propagates_before_use(tf: Terraform) -> None:
    wait = tf.resource("time_sleep", "iam_propagation")
    deps = str(wait["depends_on"])
    for head, _block in _blocks((TERRAFORM_DIR / "dataflow.tf").read_text(encoding="utf-8")):
        rtype, name = (part.strip('"') for part in head.split()[:2])
        if rtype.endswith("_iam_member"):
            assert f"{rtype}.{name}" in deps, f"{rtype}.{name} is not waited for"
    # Turning the scale path on later waits again.
    assert wait["triggers"]["scale"] == "${tostring(var.scale_enabled)}"


def _build_steps(name: str) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    return {s["id"]: s for s in config["steps"]}


def _script(step: dict[str, Any]) -> str:
    return " ".join(str(a) for a in step.get("args", []))


def test_the_plan_builds_the_image_and_the_spec_names_its_digest(tf: Terraform) -> None:
    steps = _build_steps("cloudbuild.yaml")
    build = _script(steps["health-beam-image"])
    assert "--file=jobs/health_beam/Dockerfile" in build
    assert "scale_enabled" in build and "terraform/terraform.tfvars" in build
    assert 'docker push "$$image:$BUILD_ID"' in build and "RepoDigests" in build
    assert "/workspace/health_beam_image.txt" in build
    plan = steps["terraform-plan"]
    assert "health-beam-image" in plan["waitFor"], "the image is pushed before the plan"
    assert '-var="health_beam_image=$$(cat /workspace/health_beam_image.txt)"' in _script(plan)
    spec = tf.resource("google_storage_bucket_object", "dataflow_template")
    assert spec["bucket"] == "${google_storage_bucket.artifacts.name}"
    assert spec["name"] == "${local.dataflow_template_object}"
    assert tf.locals["dataflow_template_spec"] == (
        "gs://${local.artifact_bucket_name}/${local.dataflow_template_object}"
    )
    assert tf.locals["dataflow_template_object"] == (
        "${local.dataflow_prefix}templates/health_beam.json"
    )
    content = spec["content"]
    assert "image = var.health_beam_image" in content
    assert "sdkContainerImage = var.health_beam_image" in content
    assert "serviceAccountEmail = google_service_account.dataflow[0].email" in content
    assert '"WORKER_IP_PRIVATE"' in content
    assert 'var.health_beam_image != ""' in str(spec["lifecycle"])
    # The one copy of the template's metadata, read by its path in the repository and
    # carried by the plan bundle so the apply finds it at the same relative place.
    ref = re.search(r'file\("\$\{path\.module\}/([^"]+)"\)', content)
    assert ref and (TERRAFORM_DIR / ref.group(1)).resolve() == (
        ROOT / "jobs/health_beam/metadata.json"
    )
    keep = _script(steps["keep-plan"])
    assert re.search(r"tar -czf \S+ .* terraform jobs/health_beam/metadata\.json", keep)
    fetch = _script(_build_steps("cloudbuild-apply.yaml")["fetch-plan"])
    assert "tar -xzf plan-bundle.tgz" in fetch
    assert _build_steps("cloudbuild-apply.yaml")["terraform-apply"]["dir"] == (
        "/workspace/reviewed/terraform"
    )
    assert not (ROOT / "jobs/health_beam/cloudbuild.yaml").exists(), "one build path"


def test_the_image_variable_takes_a_digest_only(tf: Terraform) -> None:
    validation = tf.variables["health_beam_image"]["validation"][0]["condition"]
    pattern = re.search(r'regex\("(.+)", var\.health_beam_image\)', validation).group(1)
    pattern = pattern.replace("\\\\", "\\")
    digest = "europe-west1-docker.pkg.dev/p/forecastguard/health-beam@sha256:" + "a" * 64
    assert re.fullmatch(pattern, digest)
    assert not re.fullmatch(pattern, "europe-west1-docker.pkg.dev/p/forecastguard/health-beam:1")
    assert tf.variables["health_beam_image"]["default"] == ""


def test_the_launch_carries_every_setting_the_pipeline_needs(tf: Terraform) -> None:
    """The function's launch forwards these settings (forecastguard.health.dataflow.FORWARDED,
    tests/integration/health/test_dataflow_launch.py): each is declared by the template's
    metadata and given to health_pubsub by Terraform, or deliberately not wired."""
    from forecastguard.health.dataflow import FORWARDED

    metadata = json.loads(Path(ROOT / "jobs/health_beam/metadata.json").read_text())
    declared = {p["name"] for p in metadata["parameters"]}
    assert {"source", "as_of", "window_days"} <= declared
    env_of = Settings.env_names()
    pubsub, secret_keys, _ = function_env(tf, "health_pubsub")
    for name in FORWARDED:
        assert name in declared, name
        var = env_of[name]
        assert var in pubsub or var in secret_keys or var in contract.NOT_WIRED_ON_GCP, var
    grant = tf.resource("google_secret_manager_secret_iam_member", "dataflow_reads_db_pass")
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert grant["secret_id"] == '${google_secret_manager_secret.secret["db-pass"].secret_id}'
    assert grant["member"] == "${google_service_account.dataflow[0].member}"


def test_the_workers_have_a_cloud_sql_iam_user(tf: Terraform) -> None:
    from forecastguard.health.dataflow import worker_db_user

    user = tf.resource("google_sql_user", "dataflow")
    assert user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert user["name"] == "${google_service_account.dataflow[0].email}"
    assert user["count"] == (
        "${var.scale_enabled && var.create_sql_instance && var.db_iam_auth ? 1 : 0}"
    )
    # The name the launch passes as db_user is that user's MySQL name.
    assert worker_db_user("fg-dataflow@p.iam.gserviceaccount.com") == "fg-dataflow"
    sql = {r for p, r, t in iam_grants(tf) if p == "dataflow" and t == "project?sql"}
    assert sql == {"roles/cloudsql.client", "roles/cloudsql.instanceUser"}


def test_a_bigquery_installation_trainer_writes_its_forecasts_there(tf: Terraform) -> None:
    plain, _, _ = trainer_env(tf)
    assert plain["BIGQUERY_URL"] == '${local.bigquery_installation ? local.bigquery_url : ""}'
    grants = {(r, t) for p, r, t in iam_grants(tf) if p == "trainer" and "bigquery" in r}
    assert grants == {
        ("roles/bigquery.dataEditor", "bigquery_dataset:scale"),
        ("roles/bigquery.jobUser", "project"),
    }
    for rtype, name in (
        ("google_bigquery_dataset_iam_member", "trainer_edits_dataset"),
        ("google_project_iam_member", "trainer_runs_bigquery_jobs"),
    ):
        assert tf.resource(rtype, name)["count"] == "${local.bigquery_installation ? 1 : 0}"


def test_a_failed_or_late_job_alerts(tf: Terraform) -> None:
    from forecastguard.health.dataflow import job_name

    policy = tf.resource("google_monitoring_alert_policy", "dataflow")
    filters = [c["condition_threshold"][0]["filter"] for c in policy["conditions"]]
    assert any("dataflow.googleapis.com/job/is_failed" in f for f in filters)
    late = [c for c in policy["conditions"] if "job/elapsed_time" in str(c)]
    assert late and late[0]["condition_threshold"][0]["threshold_value"] == (
        "${var.dataflow_max_minutes * 60}"
    )
    # The filters match the names the function gives its jobs.
    prefix = tf.locals["dataflow_job_prefix"]
    assert job_name(date(2026, 5, 30), "event-1").startswith(prefix)
    assert all('starts_with("${local.dataflow_job_prefix}")' in f for f in filters)


def test_the_dataset_is_where_the_jobs_run_unless_set(tf: Terraform) -> None:
    # A dataset in another location than the Dataflow region makes every check read
    # across regions: by default it follows the deployment's region.
    assert tf.variables["bigquery_location"]["default"] == ""
    dataset = tf.resource("google_bigquery_dataset", "scale")
    assert dataset["location"] == (
        '${var.bigquery_location != "" ? var.bigquery_location : var.region}'
    )

"""Wiring checks on terraform/, parsed with python-hcl2 (no terraform binary needed).

Each test states one promise of issue 7: every variable a component reads is set for it,
secrets come from Secret Manager only, IAM is exactly the minimal set, topics line up.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from forecastguard.config import Settings
from forecastguard.health.params import parse_check_params
from forecastguard.health.service import health_points
from forecastguard.metrics import METRIC_PREFIX
from tests.infra import infra_contract as contract
from tests.infra.hcl import TERRAFORM_DIR, Terraform, load, walk_strings

ROOT = TERRAFORM_DIR.parent


@pytest.fixture(scope="module")
def tf() -> Terraform:
    return load()


# --- module hygiene -----------------------------------------------------------------------


def test_module_layout_follows_the_style(tf: Terraform) -> None:
    for name in ("versions.tf", "variables.tf", "outputs.tf"):
        assert (TERRAFORM_DIR / name).is_file(), f"terraform/{name} is missing"
    providers = tf.terraform[0]["required_providers"][0]
    google = providers["google"]["version"]
    assert ">=" in google and "<" in google.replace("<=", ""), (
        f"pin the google provider to a range with an upper bound, got {google!r}"
    )


def test_every_variable_has_a_description_and_a_type(tf: Terraform) -> None:
    for name, body in tf.variables.items():
        assert body.get("description"), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"


def test_every_output_has_a_description(tf: Terraform) -> None:
    for name, body in tf.outputs.items():
        assert body.get("description"), f"output {name} has no description"


def test_variables_are_declared_and_used(tf: Terraform) -> None:
    text = "\n".join(tf.texts.values())
    used = set(re.findall(r"\bvar\.(\w+)", text))
    assert used - set(tf.variables) == set(), "undeclared variables referenced"
    assert set(tf.variables) - used == set(), "declared variables never used"


def test_locals_referenced_exist(tf: Terraform) -> None:
    text = "\n".join(tf.texts.values())
    assert set(re.findall(r"\blocal\.(\w+)", text)) - set(tf.locals) == set()


def test_resource_references_point_at_declared_resources(tf: Terraform) -> None:
    text = "\n".join(tf.texts.values())
    for rtype, name in set(re.findall(r"\b(google_\w+)\.(\w+)\b", text)):
        if rtype in tf.resources:
            assert name in tf.resources[rtype], f"{rtype}.{name} is referenced but not declared"


# --- environment wiring -------------------------------------------------------------------


def _dynamic_blocks(body: dict[str, Any], block: str) -> list[dict[str, Any]]:
    return [d[block] for d in body.get("dynamic", []) if block in d]


def _conditional_secret_keys(tf: Terraform, for_each: str) -> set[str]:
    """Keys of the conditional secret maps (`local.db_pass_secrets`, `optuna_secrets`,
    `smtp_secrets`, alone or merged): each is `cond ? {KEY = ...} : {}` (or the reverse)."""
    names = re.findall(r"local\.(\w+)", for_each)
    assert names and re.fullmatch(r"\$\{(merge\()?[\w.,\s]+\)?\}", for_each), for_each
    keys: set[str] = set()
    for name in names:
        expr = tf.locals[name]
        m = re.fullmatch(r"\$\{(.+?) \? (\{.*\}) : (\{.*\})\}", expr)
        assert m, f"local.{name} must be `condition ? {{...}} : {{}}`: {expr!r}"
        branch = m.group(3) if m.group(2) == "{}" else m.group(2)
        assert "{}" in (m.group(2), m.group(3)), f"local.{name}: one branch must be empty"
        keys |= set(re.findall(r"(\w+)\s*=", branch))
    return keys


def function_env(tf: Terraform, name: str) -> tuple[dict[str, Any], set[str], set[str]]:
    """(plain env, secret env keys, secret ids) of one Cloud Function."""
    service = tf.resource("google_cloudfunctions2_function", name)["service_config"][0]
    plain = tf.env_map(service["environment_variables"])
    secret_keys, secret_ids = set(), set()
    for block in service.get("secret_environment_variables", []):
        secret_keys.add(block["key"])
        secret_ids.add(block["secret"])
    for dyn in _dynamic_blocks(service, "secret_environment_variables"):
        secret_keys |= _conditional_secret_keys(tf, dyn["for_each"])
        assert dyn["content"][0]["version"] == "latest"
    return plain, secret_keys, secret_ids


def trainer_env(
    tf: Terraform, job_name: str = "trainer"
) -> tuple[dict[str, Any], set[str], set[str]]:
    """(plain env, secret env names, secret ids) of a Cloud Run job's container."""
    job = tf.resource("google_cloud_run_v2_job", job_name)
    container = job["template"][0]["template"][0]["containers"][0]
    plain: dict[str, Any] = {}
    secret_keys, secret_ids = set(), set()
    for env in container.get("env", []):
        if "value_source" in env:
            secret_keys.add(env["name"])
            secret_ids.add(env["value_source"][0]["secret_key_ref"][0]["secret"])
        else:
            plain[env["name"]] = env["value"]
    for dyn in _dynamic_blocks(container, "env"):
        content = dyn["content"][0]
        if "value_source" in content:
            secret_keys |= _conditional_secret_keys(tf, dyn["for_each"])
        else:
            assert content == {"name": "${env.key}", "value": "${env.value}"}
            plain.update(tf.env_map(dyn["for_each"]))
    return plain, secret_keys, secret_ids


def component_envs(tf: Terraform) -> Iterator[tuple[str, str, dict, set[str], set[str]]]:
    for function, component in contract.FUNCTION_COMPONENT.items():
        yield (function, component, *function_env(tf, function))
    yield ("trainer job", "trainer", *trainer_env(tf))
    yield ("migrate job", "migrate", *trainer_env(tf, "migrate"))


def test_every_component_gets_every_variable_it_reads(tf: Terraform) -> None:
    for where, component, plain, secret_keys, _ in component_envs(tf):
        missing = contract.COMPONENT_ENV[component] - set(plain) - secret_keys
        assert not missing, f"{where} lacks {sorted(missing)}"
        assert not set(plain) & secret_keys, f"{where} sets a variable twice"


def test_components_get_nothing_they_do_not_read(tf: Terraform) -> None:
    for where, component, plain, secret_keys, _ in component_envs(tf):
        extra = set(plain) | secret_keys
        extra -= contract.COMPONENT_ENV[component]
        assert not extra, f"{where} is given variables its settings do not read: {sorted(extra)}"


def test_secrets_come_only_from_secret_manager(tf: Terraform) -> None:
    for where, component, plain, secret_keys, _ in component_envs(tf):
        assert not set(plain) & contract.SECRET_ENV, f"{where} has a secret in plain env"
        expected = contract.COMPONENT_ENV[component] & contract.SECRET_ENV
        assert secret_keys == expected, f"{where}: secret env {secret_keys} != {expected}"


def test_gcp_fixed_values(tf: Terraform) -> None:
    for where, _component, plain, _, _ in component_envs(tf):
        for name, value in contract.GCP_FIXED_ENV.items():
            if name in plain:
                assert plain[name] == value, f"{where}: {name}={plain[name]!r}, want {value!r}"
        assert "DATABASE_URL" not in plain, f"{where}: DATABASE_URL must be unset on Google Cloud"


def test_env_values_point_at_the_right_resources(tf: Terraform) -> None:
    health, _, _ = function_env(tf, "health_http")
    assert health["RETRAIN_TOPIC"] == "${google_pubsub_topic.retrain.id}"
    assert health["HEALTH_AUDIENCE"] == "${local.health_url}"
    assert "${local.function_names.health_http}" in tf.locals["health_url"]
    trigger, _, _ = function_env(tf, "train_trigger")
    assert trigger["TRAINER_JOB"] == "${google_cloud_run_v2_job.trainer.id}"
    # The guard outlives every attempt of a run (the job retries a failed task).
    assert trigger["TRAINER_TIMEOUT_S"] == (
        "${tostring(var.trainer_timeout_s * (var.trainer_max_retries + 1))}"
    )
    job, _, _ = trainer_env(tf)
    assert job["ARTIFACT_URI"].startswith("gs://${google_storage_bucket.artifacts.name}/")
    # Both health functions write each check's HTML report where the trainer keeps its runs,
    # and may overwrite the newest copy (health/latest/report.html).
    for name in ("health_http", "health_pubsub"):
        assert function_env(tf, name)[0]["ARTIFACT_URI"] == job["ARTIFACT_URI"]
    writes = tf.resource("google_storage_bucket_iam_member", "health_writes_reports")
    assert writes["bucket"] == "${google_storage_bucket.artifacts.name}"
    assert writes["role"] == "roles/storage.objectUser"
    assert writes["member"] == '${google_service_account.component["health"].member}'
    alert = tf.resource("google_monitoring_alert_policy", "unhealthy")
    assert "/health/latest/report.html" in str(alert["documentation"])
    # The trainer names its own job (to start the next queued request) without a self-reference.
    assert job["TRAINER_JOB"] == "${local.trainer_job_id}"
    assert tf.locals["trainer_job_id"] == (
        "projects/${var.project_id}/locations/${var.region}/jobs/${local.trainer_job_name}"
    )
    assert tf.resource("google_cloud_run_v2_job", "trainer")["name"] == "${local.trainer_job_name}"
    assert job["TRAINER_TIMEOUT_S"] == trigger["TRAINER_TIMEOUT_S"]
    # Without the SMTP password there is no SMTP_HOST: the trainer skips the email.
    assert job["SMTP_HOST"] == '${local.email_enabled ? var.smtp_host : ""}'
    assert "var.smtp_password_secret" in tf.locals["email_enabled"]
    health, _, _ = function_env(tf, "health_http")
    assert health["HEALTH_ALLOWED_CALLERS"] == '${join(",", var.health_callers)}'
    for where, _component, plain, _, _ in component_envs(tf):
        assert plain["CLOUD_SQL_INSTANCE"] == "${local.cloud_sql_instance}", where
        assert plain["GCP_PROJECT"] == "${var.project_id}", where


def test_every_referenced_secret_exists(tf: Terraform) -> None:
    declared = set(tf.local_map("secrets"))
    text = "\n".join(tf.texts.values())
    referenced = set(re.findall(r'google_secret_manager_secret\.secret\["([\w-]+)"\]', text))
    assert referenced, "no secret is referenced"
    assert referenced <= declared, f"undeclared secrets: {referenced - declared}"
    for where, _c, _p, _k, ids in component_envs(tf):
        for secret in ids - {"${env.value}"}:
            m = re.fullmatch(
                r'\$\{google_secret_manager_secret\.secret\["([\w-]+)"\]\.secret_id\}', secret
            )
            assert m and m.group(1) in declared, f"{where} reads unknown secret {secret!r}"
    readers = {g["secret"] for g in tf.local_map("secret_readers").values()}
    assert readers == declared
    # The one secret a person brings (SMTP) is referenced by id and read by the trainer only.
    assert tf.locals["smtp_secrets"] == (
        "${local.email_enabled ? {SMTP_PASSWORD = var.smtp_password_secret} : {}}"
    )


def test_generated_secrets_have_versions_but_never_enter_the_state(tf: Terraform) -> None:
    """Every secret a component reads at start has a version from the first apply, written
    through write-only arguments from ephemeral passwords (in neither plan nor state)."""
    assert "random_password" not in tf.resources, "random_password keeps its result in the state"
    assert set(tf.ephemeral.get("random_password", {})) == {"api_token", "db"}
    versions = tf.resources["google_secret_manager_secret_version"]
    expected = {"health_api_token": "health-api-token", "db_pass": "db-pass"}
    assert set(versions) == set(expected)
    for name, secret in expected.items():
        body = versions[name]
        assert body["secret"] == f'${{google_secret_manager_secret.secret["{secret}"].id}}', name
        assert "secret_data" not in body, f"{name}: secret_data would be stored in the state"
        assert "ephemeral.random_password." in body["secret_data_wo"], name
        assert body["secret_data_wo_version"] == "${var.secret_generation}", name
    # The SQL user gets the same generated password, write-only, rotated with the secret.
    user = tf.resource("google_sql_user", "password")
    assert "password" not in user
    assert user["password_wo"] == versions["db_pass"]["secret_data_wo"]
    assert user["password_wo_version"] == "${var.secret_generation}"
    # Nothing else writes a secret value.
    for rtype, by_name in tf.resources.items():
        for name, body in by_name.items():
            assert "secret_data" not in walk_strings(body), f"{rtype}.{name} writes a secret value"
    # Deployed components wait for the versions they read.
    functions = tf.resources["google_cloudfunctions2_function"]
    assert "google_secret_manager_secret_version.health_api_token" in str(
        functions["health_http"]["depends_on"]
    )
    for name in ("health_http", "health_pubsub", "train_trigger"):
        assert "google_secret_manager_secret_version.db_pass" in str(functions[name]["depends_on"])
    job_deps = str(tf.resource("google_cloud_run_v2_job", "trainer")["depends_on"])
    assert "secret_version.db_pass" in job_deps


def test_one_source_for_every_database_credential(tf: Terraform) -> None:
    """Issue 25: the Optuna URL secret was written from a second random value and every
    train-mode run failed with MySQL 1045. Now one generated value is the SQL user's
    password and the db-pass secret, written in one apply, and nothing else carries it:
    the trainer builds the study's URL from DB_PASS (tests/unit/trainer2)."""
    db_value = "${ephemeral.random_password.db.result}"
    writers = [
        (rtype, name)
        for rtype, by_name in tf.resources.items()
        for name, body in by_name.items()
        if any("ephemeral.random_password.db." in s for s in walk_strings(body))
    ]
    assert sorted(writers) == [
        ("google_secret_manager_secret_version", "db_pass"),
        ("google_sql_user", "password"),
    ], writers
    assert tf.resource("google_sql_user", "password")["password_wo"] == db_value
    version = tf.resource("google_secret_manager_secret_version", "db_pass")
    assert version["secret_data_wo"] == db_value
    # The version is written after the user: a failed instance or user leaves no version
    # behind that a retry (with a new random value) would not rewrite.
    assert "google_sql_user.password" in str(version["depends_on"])
    # Only db-pass holds a database credential; the trainer gets the study's database name.
    assert set(tf.local_map("secrets")) == {"health-api-token", "db-pass"}
    plain, secret_keys, _ = trainer_env(tf)
    assert plain["OPTUNA_DATABASE"] == '${local.optuna_enabled ? var.optuna_db_name : ""}'
    assert "OPTUNA_STORAGE" not in plain and "OPTUNA_STORAGE" not in secret_keys
    assert "DB_PASS" in secret_keys
    # Every component that logs in with a password reads that same secret.
    assert tf.locals["db_pass_secrets"] == (
        '${var.db_iam_auth ? {} : {DB_PASS = google_secret_manager_secret.secret["db-pass"].secret_id}}'
    )
    for where, component, _plain, keys, _ids in component_envs(tf):
        if "DB_PASS" in contract.COMPONENT_ENV[component]:
            assert "DB_PASS" in keys, where


def test_write_only_arguments_have_the_versions_they_need(tf: Terraform) -> None:
    """secret_data_wo/password_wo exist from google provider 6.23 and Terraform 1.11."""
    block = tf.terraform[0]
    assert block["required_version"].startswith(">= 1.11"), block["required_version"]
    providers = block["required_providers"][0]
    assert providers["google"]["version"].startswith(">= 6.23")
    assert providers["google-beta"]["version"].startswith(">= 6.23")
    assert providers["random"]["version"].startswith(">= 3.7.1"), "ephemeral random_password"


def test_settings_fields_are_all_accounted_for() -> None:
    """The contract knows every variable Settings reads, and lists none that nobody reads
    (Settings, or the trainer job's own options)."""
    wired = contract.all_component_env() | set(contract.NOT_WIRED_ON_GCP)
    missing = set(Settings.env_names().values()) - wired
    assert not missing, f"Settings reads {sorted(missing)}: add them to infra_contract.py"
    import trainer.run.cli  # the job's own options (flags with environment variables)

    job_options = {p.envvar for p in trainer.run.cli.command.params if p.envvar}
    read = set(Settings.env_names().values()) | job_options
    unknown = contract.all_component_env() - read
    assert not unknown, f"the contract lists variables nothing reads: {unknown}"


# --- IAM ----------------------------------------------------------------------------------

# IAM resource type -> (target attribute, patterns naming the target after substitution).
_TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "google_project_iam_member": ("project", ()),
    "google_secret_manager_secret_iam_member": (
        "secret_id",
        (
            r'\$\{google_secret_manager_secret\.secret\["([\w-]+)"\]\.secret_id\}',
            # the SMTP password: a person's own secret, named by a variable
            r"\$\{var\.(smtp)_password_secret\}",
        ),
    ),
    "google_pubsub_topic_iam_member": ("topic", (r"\$\{google_pubsub_topic\.(\w+)\.name\}",)),
    "google_pubsub_subscription_iam_member": (
        "subscription",
        (r'\$\{"google_pubsub_subscription\.(\w+)"\.name\}',),
    ),
    "google_cloud_run_v2_job_iam_member": (
        "name",
        (r"\$\{google_cloud_run_v2_job\.(\w+)\.name\}",),
    ),
    "google_storage_bucket_iam_member": (
        "bucket",
        (r"\$\{google_storage_bucket\.(\w+)\.name\}",),
    ),
    "google_cloud_run_service_iam_member": (
        "service",
        (r"\$\{google_cloudfunctions2_function\.(\w+)\.service_config\[0\]\.service\}",),
    ),
    "google_artifact_registry_repository_iam_member": (
        "repository",
        (r"\$\{google_artifact_registry_repository\.(\w+)\.name\}",),
    ),
    # issue 24: the scale path's dataset
    "google_bigquery_dataset_iam_member": (
        "dataset_id",
        (r"\$\{google_bigquery_dataset\.(\w+)\[0\]\.dataset_id\}",),
    ),
    "google_service_account_iam_member": (
        "service_account_id",
        (
            r'\$\{google_service_account\.component\["([\w-]+)"\]\.name\}',
            r'\$\{"([\w-]+)"\.name\}',  # for_each over the component accounts
            r"\$\{google_service_account\.(dataflow)\[0\]\.name\}",  # issue 24
        ),
    ),
}
_KIND = {
    "google_secret_manager_secret_iam_member": "secret",
    "google_pubsub_topic_iam_member": "pubsub_topic",
    "google_pubsub_subscription_iam_member": "pubsub_subscription",
    "google_cloud_run_v2_job_iam_member": "cloud_run_v2_job",
    "google_storage_bucket_iam_member": "storage_bucket",
    "google_cloud_run_service_iam_member": "cloud_run_service",
    "google_service_account_iam_member": "service_account",
    "google_artifact_registry_repository_iam_member": "artifact_registry",
    "google_bigquery_dataset_iam_member": "bigquery_dataset",
}
_HEALTH_INVOKERS = (
    '${toset(var.health_http_public ? ["allUsers"] : [for email in var.health_callers : '
    '"${endswith(email, ".gserviceaccount.com") ? "serviceAccount" : "user"}:${email}"])}'
)


def _each_items(tf: Terraform, for_each: Any) -> list[tuple[str, Any]]:
    """Every (each.key, each.value) a for_each can produce, ignoring its `if` filters."""
    if for_each is None:
        return [("", None)]
    if isinstance(for_each, dict):
        return list(for_each.items())
    text = str(for_each)
    if m := re.fullmatch(r"\$\{toset\(\[(.*)\]\)\}", text):
        items = re.findall(r'"([^"]+)"', m.group(1))
        return [(i, i) for i in items]
    if text == _HEALTH_INVOKERS:
        return [("callers-or-public", "callers-or-public")]
    if m := re.fullmatch(r"\$\{\{for (\w+), (\w+) in local\.(\w+) : \1 => \2 if .*\}\}", text):
        return list(tf.local_map(m.group(3)).items())
    if m := re.fullmatch(r"\$\{local\.(\w+)\}", text):
        return _each_items(tf, tf.locals[m.group(1)])
    if m := re.fullmatch(r"\$\{var\.db_iam_auth \? local\.(\w+) : toset\(\[\]\)\}", text):
        return _each_items(tf, tf.locals[m.group(1)])
    if text == '${var.deployer_service_account == "" ? {} : google_service_account.component}':
        return [(k, k) for k in tf.local_map("service_accounts")]
    if m := re.fullmatch(r"\$\{var\.scale_enabled \? toset\(\[(.*)\]\) : toset\(\[\]\)\}", text):
        return [(i, i) for i in re.findall(r'"([^"]+)"', m.group(1))]  # issue 24
    if m := re.fullmatch(r"\$\{(google_\w+\.\w+)\}", text):  # one grant per instance
        return [("*", m.group(1))]
    raise AssertionError(f"cannot expand for_each {text!r}: extend the IAM test")


def _subst(expr: str, key: str, value: Any) -> str:
    """Substitute each.value.<attr>, each.value and each.key into an expression."""
    if isinstance(value, dict):
        expr = re.sub(r"each\.value\.(\w+)", lambda m: f'"{value[m.group(1)]}"', expr)
    expr = expr.replace("each.value", f'"{value}"').replace("each.key", f'"{key}"')
    return expr


def _principal(member: str) -> str:
    if m := re.fullmatch(r'\$\{google_service_account\.component\["([\w-]+)"\]\.member\}', member):
        return m.group(1)
    if member == "${local.pubsub_service_agent}":
        return "pubsub-agent"
    if member == "${google_service_account.dataflow[0].member}":
        return "dataflow"  # issue 24: the Dataflow workers
    if member == '${"callers-or-public"}':
        return "callers-or-public"
    if member == "serviceAccount:${var.deployer_service_account}":
        return "deployer"
    raise AssertionError(f"unknown IAM member {member!r}")


def _literal(expr: str) -> str:
    m = re.fullmatch(r'\$\{"([^"]*)"\}', expr)
    return m.group(1) if m else expr


# The IAM conditions grants may carry: expression -> tag added to the target.
_CONDITIONS = {
    "${local.sql_condition.expression}": "sql",  # the one Cloud SQL instance
    "${local.gcf_sources_condition.expression}": "gcf-sources",  # Google's source copies
    'resource.name.startsWith("${local.health_reports_prefix}")': "health",  # reports only
    # the Dataflow job's temp and staging files (not the template spec)
    'resource.name.startsWith("${local.dataflow_prefix_object}temp") || '
    'resource.name.startsWith("${local.dataflow_prefix_object}staging")': "dataflow",
    # the Flex Template spec only (the health account launches it)
    'resource.name.startsWith("${local.dataflow_templates_object}")': "dataflow-templates",
}


def _condition(tf: Terraform, body: dict[str, Any], value: Any) -> str:
    """The tag of a grant's IAM condition ("" without one); unknown conditions fail."""
    if "condition" in body:
        expression = body["condition"][0]["expression"]
        assert expression in _CONDITIONS, f"unknown IAM condition {expression!r}"
        return _CONDITIONS[expression]
    for dyn in _dynamic_blocks(body, "condition"):
        assert dyn["for_each"] == '${each.value.scope == "sql" ? [local.sql_condition] : []}'
        assert dyn["content"][0]["expression"] == "${condition.value.expression}"
        return "sql" if isinstance(value, dict) and value.get("scope") == "sql" else ""
    return ""


def iam_grants(tf: Terraform) -> set[tuple[str, str, str]]:
    grants: set[tuple[str, str, str]] = set()
    for rtype, by_name in tf.resources.items():
        assert not rtype.endswith(("_iam_binding", "_iam_policy")), (
            f"{rtype} is authoritative: it would remove grants made outside this module"
        )
        if not rtype.endswith("_iam_member"):
            continue
        assert rtype in _TARGETS, f"{rtype}: unknown IAM resource, extend the test"
        attr, patterns = _TARGETS[rtype]
        for name, body in by_name.items():
            for key, value in _each_items(tf, body.get("for_each")):
                role = _literal(_subst(body["role"], key, value))
                principal = _principal(_subst(body["member"], key, value))
                condition = _condition(tf, body, value)
                if not patterns:
                    target = "project"
                else:
                    raw = _subst(body[attr], key, value)
                    raw = re.sub(r'^\$\{"(.*)"\}$', r"\1", raw)
                    found = [m.group(1) for p in patterns if (m := re.fullmatch(p, raw))]
                    assert found, f"{rtype}.{name}: cannot read the {attr} {raw!r}"
                    target = f"{_KIND[rtype]}:{found[0]}"
                    if target == "secret:smtp":
                        target = "secret:smtp-password"
                grants.add((principal, role, f"{target}?{condition}" if condition else target))
    return grants


def test_iam_is_exactly_the_minimal_set(tf: Terraform) -> None:
    grants = iam_grants(tf)
    extra = grants - contract.ALLOWED_GRANTS
    missing = contract.ALLOWED_GRANTS - grants
    assert not extra, f"grants beyond the minimal set: {sorted(extra)}"
    assert not missing, f"grants the components need are missing: {sorted(missing)}"


def test_no_broad_roles_anywhere(tf: Terraform) -> None:
    text = "\n".join(tf.texts.values())
    for role in contract.FORBIDDEN_ROLES:
        assert f'"{role}"' not in text, f"{role} must not be granted"
    grants = iam_grants(tf)
    # Project-wide roles only where no narrower resource exists; Cloud SQL's on the instance.
    assert {r for _p, r, t in grants if t == "project"} <= contract.PROJECT_ROLES
    assert {r for _p, r, t in grants if t == "project?sql"} <= contract.SQL_CONDITIONED_ROLES
    # Service Account User only on single accounts (never the project-wide default).
    acts_as = {t for p, r, t in grants if r == "roles/iam.serviceAccountUser"}
    assert acts_as and all(t.startswith("service_account:") for t in acts_as)


def test_cloud_sql_roles_are_conditioned_on_the_instance(tf: Terraform) -> None:
    condition = tf.local_map("sql_condition")
    assert condition["expression"] == (
        'resource.name == "${local.sql_instance_resource}" && '
        'resource.service == "sqladmin.googleapis.com"'
    )
    assert tf.locals["sql_instance_resource"] == (
        'projects/${split(":", local.cloud_sql_instance)[0]}/instances/'
        '${element(split(":", local.cloud_sql_instance), 2)}'
    )
    sql_grants = {(p, r) for p, r, t in iam_grants(tf) if r in contract.SQL_CONDITIONED_ROLES}
    assert sql_grants and all(
        (p, r, "project?sql") in contract.ALLOWED_GRANTS for p, r in sql_grants
    )


def test_function_builds_can_read_googles_source_copy_and_push_their_images(
    tf: Terraform,
) -> None:
    """Issue 25: every Gen2 build failed with "Access to bucket gcf-v2-sources-... denied":
    Cloud Functions copies the source into Google's gcf-v2-sources-<project number>-<region>
    bucket and the custom build account reads it there. It also writes logs and pushes the
    image, to the functions' own repository (not the trainer's, whose :latest is a cache)."""
    grants = iam_grants(tf)
    build = {(r, t) for p, r, t in grants if p == "fn-build"}
    assert ("roles/storage.objectViewer", "project?gcf-sources") in build
    assert ("roles/logging.logWriter", "project") in build
    assert build & {(r, t) for r, t in build if r == "roles/artifactregistry.writer"} == {
        ("roles/artifactregistry.writer", "artifact_registry:functions")
    }
    assert tf.locals["gcf_sources_bucket"] == (
        "projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}"
    )
    condition = tf.local_map("gcf_sources_condition")["expression"]
    assert condition == (
        'resource.name == "${local.gcf_sources_bucket}" || '
        'resource.name.startsWith("${local.gcf_sources_bucket}/objects/")'
    )
    # The condition grants exactly that bucket and its objects, nothing else.
    bucket = "projects/_/buckets/gcf-v2-sources-123456789-europe-west1"
    pattern = condition.replace("${local.gcf_sources_bucket}", bucket)
    for name, allowed in (
        (bucket, True),
        (f"{bucket}/objects/health/function-source.zip", True),
        ("projects/_/buckets/gcf-v2-sources-123456789-europe-west1x/objects/a", False),
        ("projects/_/buckets/proj-forecastguard-artifacts/objects/champion.json", False),
    ):
        exact, prefix = re.findall(r'"([^"]+)"', pattern)
        assert (name == exact or name.startswith(prefix)) is allowed, name
    functions = tf.resources["google_cloudfunctions2_function"]
    for name, body in functions.items():
        config = body["build_config"][0]
        assert config["service_account"] == '${google_service_account.component["fn-build"].id}'
        assert config["docker_repository"] == (
            "${google_artifact_registry_repository.functions.id}"
        ), name
    # The grants have propagated before the first build starts.
    wait = str(tf.resource("time_sleep", "iam_propagation")["depends_on"])
    for grant in (
        "google_project_iam_member.functions_build_reads_gcf_sources",
        "google_artifact_registry_repository_iam_member.functions_build_pushes",
        "google_project_iam_member.functions_build",
    ):
        assert grant in wait, grant


def test_health_account_writes_reports_only(tf: Terraform) -> None:
    """The health functions may write health/<check>/report.html and health/latest, but
    not champion.json or a run's files."""
    assert tf.locals["health_reports_prefix"] == (
        "projects/_/buckets/${local.artifact_bucket_name}/objects/${var.artifact_prefix}/health/"
    )
    health = {(r, t) for p, r, t in iam_grants(tf) if p == "health" and "storage" in r}
    assert health == {
        ("roles/storage.objectUser", "storage_bucket:artifacts?health"),
        # issue 24, scale_enabled: read the Flex Template spec it launches, nothing else
        ("roles/storage.objectViewer", "storage_bucket:artifacts?dataflow-templates"),
    }


def test_health_endpoint_is_private_by_default(tf: Terraform) -> None:
    assert tf.variables["health_http_public"]["default"] is False
    invoker = tf.resource("google_cloud_run_service_iam_member", "health_http_invoker")
    assert invoker["for_each"] == _HEALTH_INVOKERS
    # The scheduler calls Google APIs (Pub/Sub, Cloud Run) only: it is no invoker.
    assert not any(p == "scheduler" and r == "roles/run.invoker" for p, r, _t in iam_grants(tf))


def test_each_component_runs_as_its_own_service_account(tf: Terraform) -> None:
    functions = tf.resources["google_cloudfunctions2_function"]
    for function, component in contract.FUNCTION_COMPONENT.items():
        sa = functions[function]["service_config"][0]["service_account_email"]
        account = {"health_pubsub": "health"}.get(component, component).replace("_", "-")
        assert sa == f'${{google_service_account.component["{account}"].email}}', function
    job = tf.resource("google_cloud_run_v2_job", "trainer")["template"][0]["template"][0]
    assert job["service_account"] == '${google_service_account.component["trainer"].email}'
    migrate = tf.resource("google_cloud_run_v2_job", "migrate")["template"][0]["template"][0]
    assert migrate["service_account"] == '${google_service_account.component["migrate"].email}'
    for function in functions.values():
        build = function["build_config"][0]
        assert build["service_account"] == '${google_service_account.component["fn-build"].id}'
    assert set(tf.local_map("service_accounts")) == set(contract.COMPONENT_ACCOUNTS)


def test_name_prefix_validation_covers_the_longest_derived_name(tf: Terraform) -> None:
    """A prefix the validation accepts makes valid ids for every account, and the longest
    accepted prefix is the longest that fits (service account ids: 6-30 characters)."""
    accounts = tf.local_map("service_accounts")
    longest = max(accounts, key=len)
    assert tf.locals["longest_account_suffix"] == longest
    rules = tf.variables["name_prefix"]["validation"]
    condition = rules[0]["condition"]
    assert f'length("${{var.name_prefix}}-{longest}") <= 30' in condition
    regex = re.search(r'regex\("([^"]+)"', condition).group(1).replace("\\\\", "\\")
    max_prefix = 30 - len(longest) - 1
    for prefix in ("fg", "a" * max_prefix, "forecastguard", "a1-b2"):
        assert re.fullmatch(regex, prefix) and len(f"{prefix}-{longest}") <= 30
        for suffix in accounts:
            assert 6 <= len(f"{prefix}-{suffix}") <= 30, (prefix, suffix)
    assert len(f"{'a' * (max_prefix + 1)}-{longest}") > 30, "the bound is tight"
    for bad in ("Forecast", "9lives", "trailing-", "under_score"):
        assert not re.fullmatch(regex, bad), bad
    # The longest bucket name is validated too (<project_id>-<prefix>-function-sources).
    assert any('-function-sources") <= 63' in r["condition"] for r in rules)
    assert tf.locals["sources_bucket_name"].endswith("-function-sources")
    # Every account also checks its own id at plan time.
    account = tf.resource("google_service_account", "component")
    assert "<= 30" in account["lifecycle"][0]["precondition"][0]["condition"]


# --- topics, triggers, schedules ----------------------------------------------------------


def test_topic_names_match_the_design(tf: Terraform) -> None:
    assert tf.variables["health_topic_name"]["default"] == contract.HEALTH_TOPIC
    assert tf.variables["retrain_topic_name"]["default"] == contract.RETRAIN_TOPIC
    topics = tf.resources["google_pubsub_topic"]
    assert topics["health"]["name"] == "${var.health_topic_name}"
    assert topics["retrain"]["name"] == "${var.retrain_topic_name}"
    assert topics["dead_letter"]["name"] == "${var.dead_letter_topic_name}"


def test_event_driven_functions_are_pushed_by_subscriptions_we_manage(tf: Terraform) -> None:
    """Each event-driven function is an HTTP service fed by an ordinary push subscription:
    OIDC token of the events account for the function's URL, retries with backoff, a
    dead-letter topic, an ack deadline covering the function's timeout, no expiry."""
    functions = tf.resources["google_cloudfunctions2_function"]
    for name in functions:
        assert "event_trigger" not in functions[name], f"{name}: Eventarc trigger left over"
    subs = tf.local_map("push_subscriptions")
    expected = {
        "health_pubsub": ("health", "var.health_timeout_s"),
        "train_trigger": ("retrain", "var.train_trigger_timeout_s"),
    }
    assert set(subs) == set(expected)
    for name, (topic, timeout) in expected.items():
        assert subs[name]["topic"] == f"${{google_pubsub_topic.{topic}}}"
        assert subs[name]["function"] == f"${{google_cloudfunctions2_function.{name}}}"
        assert subs[name]["timeout"] == f"${{{timeout}}}"
        assert functions[name]["service_config"][0]["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    push = tf.resource("google_pubsub_subscription", "push")
    assert push["for_each"] == "${local.push_subscriptions}"
    assert push["topic"] == "${each.value.topic.id}"
    config = push["push_config"][0]
    assert config["push_endpoint"] == (
        "${each.value.function.service_config[0].uri}/${each.value.topic.id}"
    )
    oidc = config["oidc_token"][0]
    assert oidc["service_account_email"] == '${google_service_account.component["events"].email}'
    assert oidc["audience"] == "${each.value.function.service_config[0].uri}"
    assert "no_wrapper" not in config, "functions-framework needs the wrapped push body"
    assert push["ack_deadline_seconds"] == "${min(600, max(10, each.value.timeout))}"
    retry = push["retry_policy"][0]
    assert retry == {
        "minimum_backoff": "${var.push_min_backoff}",
        "maximum_backoff": "${var.push_max_backoff}",
    }
    assert push["expiration_policy"][0]["ttl"] == ""
    assert "google_cloud_run_service_iam_member.events_invoke" in str(push["depends_on"])
    # The events account may invoke exactly these two functions (IAM test), and the Pub/Sub
    # agent exists before it is granted anything.
    assert tf.locals["pubsub_service_agent"] == (
        "serviceAccount:${google_project_service_identity.pubsub.email}"
    )
    identity = tf.resource("google_project_service_identity", "pubsub")
    assert identity["service"] == "pubsub.googleapis.com"
    assert identity["provider"] == "google-beta"


def test_dead_letters_are_terraform_managed(tf: Terraform) -> None:
    push = tf.resource("google_pubsub_subscription", "push")
    policy = push["dead_letter_policy"][0]
    assert policy == {
        "dead_letter_topic": "${google_pubsub_topic.dead_letter.id}",
        "max_delivery_attempts": "${var.max_delivery_attempts}",
    }
    # The Pub/Sub agent publishes dead letters and acknowledges them on each subscription.
    acks = tf.resource("google_pubsub_subscription_iam_member", "pubsub_acks_dead_letters")
    assert acks["for_each"] == "${google_pubsub_subscription.push}"
    assert acks["role"] == "roles/pubsub.subscriber"
    grants = iam_grants(tf)
    assert ("pubsub-agent", "roles/pubsub.publisher", "pubsub_topic:dead_letter") in grants
    keep = tf.resource("google_pubsub_subscription", "dead_letter")
    assert keep["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert keep["expiration_policy"][0]["ttl"] == "", "the dead-letter subscription must not expire"
    # No script patches subscriptions after the apply any more.
    assert not (TERRAFORM_DIR / "scripts" / "attach_dead_letters.sh").exists()
    cloudbuild = (ROOT / "cloudbuild.yaml").read_text(encoding="utf-8")
    assert "attach_dead_letters" not in cloudbuild and "eventarc" not in cloudbuild.lower()
    assert "eventarc_triggers" not in tf.outputs


def test_iam_grants_propagate_before_they_are_used(tf: Terraform) -> None:
    wait = tf.resource("time_sleep", "iam_propagation")
    assert wait["create_duration"] == "${var.iam_propagation_wait}"
    deps = str(wait["depends_on"])
    for grant in (
        "google_secret_manager_secret_iam_member.reader",
        "google_service_account_iam_member.pubsub_mints_event_tokens",
        "google_service_account_iam_member.deployer_acts_as",
        "google_project_iam_member.component",
    ):
        assert grant in deps, grant
    users = [
        *tf.resources["google_cloudfunctions2_function"].values(),
        *tf.resources["google_cloud_run_v2_job"].values(),
        tf.resource("google_pubsub_subscription", "push"),
    ]
    for body in users:
        assert "time_sleep.iam_propagation" in str(body["depends_on"]), body.get("name")


def test_fresh_apis_and_metric_descriptors_are_waited_for(tf: Terraform) -> None:
    """Issue 25: a just-enabled API answers 403 for a while, and an alert policy or
    dashboard on a just-created metric descriptor 404 "Cannot find metric(s)" for up to
    ten minutes. Nothing depends on the APIs directly: everything waits for time_sleep."""
    text = "\n".join(tf.texts.values())
    direct = re.findall(r"depends_on\s*=\s*\[[^\]]*google_project_service\.apis", text)
    assert len(direct) == 1, "only time_sleep.apis may depend on google_project_service.apis"
    apis = tf.resource("time_sleep", "apis")
    assert apis["create_duration"] == "${var.api_enable_wait}"
    assert "google_project_service.apis" in str(apis["depends_on"])
    # The scale path's APIs (dataflow.tf) are waited for as well, when they are turned on.
    assert "google_project_service.scale" in str(apis["depends_on"])
    assert apis["triggers"]["scale"] == "${tostring(var.scale_enabled)}"
    waiting = [
        (rtype, name)
        for rtype, by_name in tf.resources.items()
        for name, body in by_name.items()
        if "time_sleep.apis" in str(body.get("depends_on", ""))
    ]
    for needed in (
        ("google_service_account", "component"),
        ("google_secret_manager_secret", "secret"),
        ("google_sql_database_instance", "main"),
        ("google_pubsub_topic", "health"),
        ("google_monitoring_metric_descriptor", "health"),
        ("google_project_service_identity", "pubsub"),
    ):
        assert needed in waiting, needed
    sleep = tf.resource("time_sleep", "metric_descriptors")
    assert sleep["create_duration"] == "${var.metric_descriptor_wait}"
    assert "google_monitoring_metric_descriptor.health" in str(sleep["triggers"])
    assert tf.variables["metric_descriptor_wait"]["default"] == "600s"
    for rtype, name in (
        ("google_monitoring_alert_policy", "unhealthy"),
        ("google_monitoring_dashboard", "health"),
    ):
        assert "time_sleep.metric_descriptors" in str(tf.resource(rtype, name)["depends_on"])
    # time_sleep comes from the hashicorp/time provider, pinned to a range.
    time = tf.terraform[0]["required_providers"][0]["time"]
    assert time["source"] == "hashicorp/time" and "<" in time["version"]


def test_functions_entry_points_and_sources(tf: Terraform) -> None:
    functions = tf.resources["google_cloudfunctions2_function"]
    assert set(functions) == set(contract.FUNCTIONS)
    for name, (folder, entry) in contract.FUNCTIONS.items():
        build = functions[name]["build_config"][0]
        assert build["entry_point"] == entry, name
        obj = build["source"][0]["storage_source"][0]["object"]
        assert obj == f'${{google_storage_bucket_object.function_source["{folder}"].name}}', name
        service = functions[name]["service_config"][0]
        assert str(service["min_instance_count"]).startswith("${var."), name
        assert str(service["max_instance_count"]).startswith("${var."), name
    staged = tf.local_map("staged")
    assert {k: v.rsplit("/", 1)[-1] for k, v in staged.items()} == {
        "health": "health",
        "train_trigger": "train_trigger",
    }


@pytest.mark.parametrize("name", sorted(contract.FUNCTIONS))
def test_entry_points_exist_in_the_function_code(name: str) -> None:
    folder, entry = contract.FUNCTIONS[name]
    main = ROOT / "functions" / folder / "main.py"
    if not main.is_file():
        pytest.fail(f"functions/{folder}/main.py is missing")
    tree = ast.parse(main.read_text(encoding="utf-8"))
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert entry in defined, f"functions/{folder}/main.py does not define {entry}"


def test_source_objects_are_named_by_the_zip_hash(tf: Terraform) -> None:
    obj = tf.resource("google_storage_bucket_object", "function_source")
    assert "${each.value.output_md5}" in obj["name"]
    archive = tf.data["archive_file"]["function"]
    assert archive["type"] == "zip"
    assert archive["source_dir"] == "${each.value}"


def test_trainer_job_is_configurable_and_runs_in_train_mode(tf: Terraform) -> None:
    job = tf.resource("google_cloud_run_v2_job", "trainer")
    outer = job["template"][0]
    inner = outer["template"][0]
    container = inner["containers"][0]
    assert outer["task_count"] == (
        "${max(local.trainer_task_count, local.trainer_partition_tasks)}"
    )
    # Issue 26: one task per partition of the catalogue, capped.
    assert tf.locals["trainer_partition_tasks"] == (
        "${min(var.trainer_max_tasks, max(1, ceil(var.catalogue_products / "
        "var.trainer_partition_size)))}"
    )
    assert tf.variables["trainer_partition_size"]["default"] == 5000
    # More than one task exactly when the shared Optuna study exists.
    assert tf.locals["trainer_task_count"] == (
        "${coalesce(var.trainer_task_count, local.optuna_enabled ? 4 : 1)}"
    )
    assert tf.locals["optuna_enabled"] == "${var.create_sql_instance && !var.db_iam_auth}"
    optuna_db = tf.resource("google_sql_database", "optuna")
    assert optuna_db["name"] == "${var.optuna_db_name}"
    assert tf.variables["optuna_db_name"]["default"] != tf.variables["db_name"]["default"]
    mounts = container["volume_mounts"][0]
    assert mounts == {"name": "cloudsql", "mount_path": "/cloudsql"}
    volume = inner["volumes"][0]
    assert volume["cloud_sql_instance"][0]["instances"] == ["${local.cloud_sql_instance}"]
    assert inner["timeout"] == "${var.trainer_timeout_s}s"
    assert inner["max_retries"] == "${var.trainer_max_retries}"
    assert container["image"] == "${var.trainer_image}"
    limits = container["resources"][0]["limits"]
    assert limits == {"cpu": "${var.trainer_cpu}", "memory": "${var.trainer_memory}"}
    assert container["args"] == ["--mode", "train"]


def _decoded_body(job: dict[str, Any]) -> str:
    body = job["http_target"][0]["body"]
    m = re.fullmatch(r"\$\{base64encode\(jsonencode\((.*)\)\)\}", body, re.S)
    assert m, f"scheduler body must be base64encode(jsonencode(...)), got {body!r}"
    return m.group(1)


def test_schedules(tf: Terraform) -> None:
    jobs = tf.resources["google_cloud_scheduler_job"]
    health = jobs["health_check"]["http_target"][0]
    assert (
        health["uri"] == "https://pubsub.googleapis.com/v1/${google_pubsub_topic.health.id}:publish"
    )
    assert health["oauth_token"][0]["service_account_email"].endswith('["scheduler"].email}')
    forecast = jobs["daily_forecast"]
    target = forecast["http_target"][0]
    assert (
        target["uri"] == "https://run.googleapis.com/v2/${google_cloud_run_v2_job.trainer.id}:run"
    )
    assert target["oauth_token"][0]["service_account_email"].endswith('["scheduler"].email}')
    body = _decoded_body(forecast)
    assert re.search(r'args\s*=\s*\["--mode",\s*"forecast"\]', body), body
    # The job runs task_count tasks for parallel tuning; the daily forecast runs one.
    assert re.search(r"\btaskCount\s*=\s*1\b", body), body
    assert jobs["health_check"]["schedule"] == "${var.health_check_schedule}"
    assert forecast["schedule"] == "${var.forecast_schedule}"


def test_scheduled_health_request_is_one_the_function_accepts(tf: Terraform) -> None:
    body = _decoded_body(tf.resource("google_cloud_scheduler_job", "health_check"))
    m = re.search(r"data\s*=\s*base64encode\(jsonencode\((.*?)\)\)", body)
    assert m, body
    assert m.group(1).strip() == "{}", "the health function refuses unknown parameters"
    assert parse_check_params(json.loads(m.group(1)), date.today()) == (None, None)


def test_monitoring_metrics_are_the_ones_the_health_check_writes(tf: Terraform) -> None:
    assert tf.locals["metric_prefix"] + "/" == METRIC_PREFIX
    written = set(re.findall(r'"(\w+)"', inspect.getsource(health_points)))
    assert set(tf.local_map("metrics")) <= written


def test_artifact_bucket_is_private_versioned_and_ages_old_runs(tf: Terraform) -> None:
    for name, bucket in tf.resources["google_storage_bucket"].items():
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name
        assert bucket["versioning"][0]["enabled"] is True, name
    rules = tf.resource("google_storage_bucket", "artifacts")["lifecycle_rule"]
    prefixes = [r["condition"][0].get("matches_prefix") for r in rules]
    assert ["${var.artifact_prefix}/runs/"] in prefixes, "no lifecycle rule for old runs"


def test_cloud_sql_is_optional_and_needs_no_password_in_state(tf: Terraform) -> None:
    instance = tf.resource("google_sql_database_instance", "main")
    assert instance["count"] == "${var.create_sql_instance ? 1 : 0}"
    assert "var.create_sql_instance" in tf.resource("google_sql_database", "forecastguard")["count"]
    assert "existing_sql_instance" in tf.locals["cloud_sql_instance"]
    ip = instance["settings"][0]["ip_configuration"][0]
    assert not ip.get("authorized_networks"), "no network may be authorised"
    assert ip["ssl_mode"] in {"ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"}
    iam_users = tf.resource("google_sql_user", "iam")
    assert iam_users["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"


def test_private_ip_is_offered_with_the_vpc_pieces_it_needs(tf: Terraform) -> None:
    """Issue 25: organisations enforcing sql.restrictPublicIp block a public instance, and
    the code hard-coded the connector's public address. sql_private_ip gives the instance
    a private address only, the functions and jobs a VPC route, the code DB_IP_TYPE."""
    assert tf.variables["sql_private_ip"]["default"] is False
    ip = tf.resource("google_sql_database_instance", "main")["settings"][0]["ip_configuration"][0]
    assert ip["ipv4_enabled"] == "${!var.sql_private_ip}"
    assert ip["private_network"] == "${var.sql_private_ip ? local.vpc_network_id : null}"
    instance_deps = str(tf.resource("google_sql_database_instance", "main")["depends_on"])
    assert "google_service_networking_connection.sql" in instance_deps
    peering = tf.resource("google_service_networking_connection", "sql")
    assert peering["service"] == "servicenetworking.googleapis.com"
    assert "google_compute_global_address.sql_private_range" in str(
        peering["reserved_peering_ranges"]
    )
    rng = tf.resource("google_compute_global_address", "sql_private_range")
    assert (rng["purpose"], rng["address_type"]) == ("VPC_PEERING", "INTERNAL")
    assert tf.locals["vpc_connector"] == (
        "${var.sql_private_ip ? google_vpc_access_connector.serverless[0].id : null}"
    )
    for name, body in tf.resources["google_cloudfunctions2_function"].items():
        service = body["service_config"][0]
        assert service["vpc_connector"] == "${local.vpc_connector}", name
        assert "PRIVATE_RANGES_ONLY" in service["vpc_connector_egress_settings"], name
    for name in ("trainer", "migrate"):
        inner = tf.resource("google_cloud_run_v2_job", name)["template"][0]["template"][0]
        [access] = _dynamic_blocks(inner, "vpc_access")
        assert access["for_each"] == "${var.sql_private_ip ? [local.vpc_connector] : []}", name
        assert access["content"][0]["egress"] == "PRIVATE_RANGES_ONLY", name
    # Every component's connector uses the address the instance has.
    assert tf.locals["common_env"]["DB_IP_TYPE"] == ('${var.sql_private_ip ? "PRIVATE" : "PUBLIC"}')
    assert Settings.env_names()["db_ip_type"] == "DB_IP_TYPE"
    # The network APIs are enabled only when needed.
    assert tf.resource("google_project_service", "apis")["for_each"] == "${local.enabled_apis}"
    assert "local.private_ip_apis" in tf.locals["enabled_apis"]


def test_monitoring_uses_the_health_metrics(tf: Terraform) -> None:
    metrics = tf.local_map("metrics")
    assert {"healthy", "avg_rmse", "global_p_value", "drifted_share"} <= set(metrics)
    policy = tf.resource("google_monitoring_alert_policy", "unhealthy")
    condition = policy["conditions"][0]["condition_threshold"][0]
    assert 'health["healthy"]' in condition["filter"]
    dashboard = tf.resource("google_monitoring_dashboard", "health")
    assert "local.dashboard_tiles" in dashboard["dashboard_json"]


def test_apis_cover_every_service_used(tf: Terraform) -> None:
    apis = set(re.findall(r'"([a-z]+\.googleapis\.com)"', tf.texts["apis.tf"]))
    for needed in (
        "cloudfunctions",
        "run",
        "pubsub",
        "cloudscheduler",
        "sqladmin",
        "secretmanager",
        "monitoring",
        "artifactregistry",
        "cloudbuild",
    ):
        assert f"{needed}.googleapis.com" in apis, needed


def test_migration_job_runs_db_upgrade_from_the_trainer_image(tf: Terraform) -> None:
    job = tf.resource("google_cloud_run_v2_job", "migrate")
    assert job["name"] == "${local.migrate_job_name}"
    container = job["template"][0]["template"][0]["containers"][0]
    assert container["image"] == "${var.trainer_image}"
    assert container["command"] == ["forecastguard"]
    assert container["args"] == ["db", "upgrade"]
    assert job["template"][0]["task_count"] == 1
    deps = str(job["depends_on"])
    assert "google_sql_database.forecastguard" in deps and "google_sql_user.password" in deps
    assert tf.outputs["migrate_job"]["value"] == "${google_cloud_run_v2_job.migrate.name}"


def test_the_migration_runs_inside_the_apply_before_new_code(tf: Terraform) -> None:
    """Issue 25: the migration ran after a targeted apply that no reviewer saw. Now it is a
    node of the one plan: the job runs an execution (runExecutionToken, a google-beta field)
    and is ready only when it succeeded; the trainer job and every function wait for it."""
    job = tf.resource("google_cloud_run_v2_job", "migrate")
    assert job["provider"] == "google-beta"
    assert job["run_execution_token"] == (
        '${var.migration_token == "" ? null : var.migration_token}'
    )
    token = tf.variables["migration_token"]
    regex = re.search(r'regex\("([^"]+)"', token["validation"][0]["condition"]).group(1)
    regex = regex.replace("\\\\", "\\")
    for good in ("", "0f4e3b2a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"):
        assert re.fullmatch(regex, good), good
    for bad in ("UPPER", "-lead", "a" * 37, "under_score"):
        assert not re.fullmatch(regex, bad), bad
    # A Cloud Build id (36 characters) fits beside the longest migration job name.
    longest_prefix = 30 - len("-train-trigger")
    assert len(f"{'a' * longest_prefix}-migrate-{'0' * 36}") < 63
    assert "< 63" in job["lifecycle"][0]["precondition"][0]["condition"]
    for name, body in tf.resources["google_cloudfunctions2_function"].items():
        assert "google_cloud_run_v2_job.migrate" in str(body["depends_on"]), name
    trainer = tf.resource("google_cloud_run_v2_job", "trainer")
    assert "google_cloud_run_v2_job.migrate" in str(trainer["depends_on"])
    # No targeted apply anywhere: the plan build sets the token, the apply applies the plan.
    for config in ("cloudbuild.yaml", "cloudbuild-apply.yaml"):
        assert "-target" not in (ROOT / config).read_text(encoding="utf-8"), config


def test_storage_data_access_is_audited(tf: Terraform) -> None:
    audit = tf.resource("google_project_iam_audit_config", "storage")
    assert audit["service"] == "storage.googleapis.com"
    assert {c["log_type"] for c in audit["audit_log_config"]} == {"DATA_READ", "DATA_WRITE"}


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary installed")
def test_terraform_fmt_is_clean() -> None:
    proc = subprocess.run(
        ["terraform", "fmt", "-check", "-diff", "-recursive", str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"terraform fmt -check failed:\n{proc.stdout}{proc.stderr}"


def test_body_encoding_helper_rejects_plain_bodies() -> None:
    with pytest.raises(AssertionError):
        _decoded_body({"http_target": [{"body": base64.b64encode(b"{}").decode()}]})


def test_terraform_files_have_no_tabs_or_trailing_spaces() -> None:
    for path in TERRAFORM_DIR.glob("*.tf"):
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            assert "\t" not in line and line == line.rstrip(), f"{path.name}:{n}"

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


def _db_pass_secret_keys(tf: Terraform, for_each: str) -> set[str]:
    """Keys of `local.db_pass_secrets`: a map that exists only without IAM database auth."""
    assert for_each == "${local.db_pass_secrets}", f"unexpected secret for_each {for_each!r}"
    expr = tf.locals["db_pass_secrets"]
    m = re.fullmatch(r"\$\{var\.db_iam_auth \? \{\} : \{(.*)\}\}", expr)
    assert m, f"local.db_pass_secrets must be empty exactly when db_iam_auth is on: {expr!r}"
    assert 'google_secret_manager_secret.secret["db-pass"]' in m.group(1)
    return set(re.findall(r"(\w+)\s*=", m.group(1)))


def function_env(tf: Terraform, name: str) -> tuple[dict[str, Any], set[str], set[str]]:
    """(plain env, secret env keys, secret ids) of one Cloud Function."""
    service = tf.resource("google_cloudfunctions2_function", name)["service_config"][0]
    plain = tf.env_map(service["environment_variables"])
    secret_keys, secret_ids = set(), set()
    for block in service.get("secret_environment_variables", []):
        secret_keys.add(block["key"])
        secret_ids.add(block["secret"])
    for dyn in _dynamic_blocks(service, "secret_environment_variables"):
        secret_keys |= _db_pass_secret_keys(tf, dyn["for_each"])
        assert dyn["content"][0]["version"] == "latest"
    return plain, secret_keys, secret_ids


def trainer_env(tf: Terraform) -> tuple[dict[str, Any], set[str], set[str]]:
    """(plain env, secret env names, secret ids) of the trainer job's container."""
    job = tf.resource("google_cloud_run_v2_job", "trainer")
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
            secret_keys |= _db_pass_secret_keys(tf, dyn["for_each"])
        else:
            assert content == {"name": "${env.key}", "value": "${env.value}"}
            plain.update(tf.env_map(dyn["for_each"]))
    return plain, secret_keys, secret_ids


def component_envs(tf: Terraform) -> Iterator[tuple[str, str, dict, set[str], set[str]]]:
    for function, component in contract.FUNCTION_COMPONENT.items():
        yield (function, component, *function_env(tf, function))
    yield ("trainer job", "trainer", *trainer_env(tf))


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
        for secret in ids:
            m = re.fullmatch(
                r'\$\{google_secret_manager_secret\.secret\["([\w-]+)"\]\.secret_id\}', secret
            )
            assert m and m.group(1) in declared, f"{where} reads unknown secret {secret!r}"
    readers = {g["secret"] for g in tf.local_map("secret_readers").values()}
    assert readers == declared


def test_no_secret_value_enters_terraform_state(tf: Terraform) -> None:
    assert "google_secret_manager_secret_version" not in tf.resources
    for rtype, by_name in tf.resources.items():
        for name, body in by_name.items():
            keys = {k for s in walk_strings(body) for k in [s]}
            assert "secret_data" not in keys, f"{rtype}.{name} writes a secret value"
    for user in tf.resources["google_sql_user"].values():
        assert "password" not in user, "the Cloud SQL user's password must be set out of band"


def test_settings_fields_are_all_accounted_for() -> None:
    """The contract knows every variable Settings reads, and lists none that nobody reads
    (Settings, or the trainer job's own options)."""
    wired = contract.all_component_env() | set(contract.NOT_WIRED_ON_GCP)
    missing = set(Settings.env_names().values()) - wired
    assert not missing, f"Settings reads {sorted(missing)}: add them to infra_contract.py"
    import trainer.cli  # the job's own options (flags with environment variables)

    job_options = {p.envvar for p in trainer.cli.command.params if p.envvar}
    read = set(Settings.env_names().values()) | job_options
    unknown = contract.all_component_env() - read
    assert not unknown, f"the contract lists variables nothing reads: {unknown}"


# --- IAM ----------------------------------------------------------------------------------

_TARGETS = {
    "google_project_iam_member": ("project", None),
    "google_secret_manager_secret_iam_member": (
        "secret_id",
        r'\$\{google_secret_manager_secret\.secret\["([\w-]+)"\]\.secret_id\}',
    ),
    "google_pubsub_topic_iam_member": ("topic", r"\$\{google_pubsub_topic\.(\w+)\.name\}"),
    "google_cloud_run_v2_job_iam_member": ("name", r"\$\{google_cloud_run_v2_job\.(\w+)\.name\}"),
    "google_storage_bucket_iam_member": ("bucket", r"\$\{google_storage_bucket\.(\w+)\.name\}"),
    "google_cloud_run_service_iam_member": (
        "service",
        r"\$\{google_cloudfunctions2_function\.(\w+)\.service_config\[0\]\.service\}",
    ),
    "google_service_account_iam_member": (
        "service_account_id",
        r'\$\{google_service_account\.component\["([\w-]+)"\]\.name\}',
    ),
}
_KIND = {
    "google_secret_manager_secret_iam_member": "secret",
    "google_pubsub_topic_iam_member": "pubsub_topic",
    "google_cloud_run_v2_job_iam_member": "cloud_run_v2_job",
    "google_storage_bucket_iam_member": "storage_bucket",
    "google_cloud_run_service_iam_member": "cloud_run_service",
    "google_service_account_iam_member": "service_account",
}


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
    if re.fullmatch(
        r"\$\{toset\(var\.health_http_public \? \[\"allUsers\"\] : var\.health_http_invokers\)\}",
        text,
    ):
        return [("allUsers", "allUsers"), ("var.health_http_invokers", "var.health_http_invokers")]
    if m := re.fullmatch(r"\$\{\{for (\w+), (\w+) in local\.(\w+) : \1 => \2 if .*\}\}", text):
        return list(tf.local_map(m.group(3)).items())
    if m := re.fullmatch(r"\$\{local\.(\w+)\}", text):
        return list(tf.local_map(m.group(1)).items())
    if m := re.fullmatch(r"\$\{var\.db_iam_auth \? local\.(\w+) : toset\(\[\]\)\}", text):
        return _each_items(tf, tf.locals[m.group(1)])
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
    if member in ('${"allUsers"}', '${"var.health_http_invokers"}'):
        return "public-or-invokers"
    raise AssertionError(f"unknown IAM member {member!r}")


def _literal(expr: str) -> str:
    m = re.fullmatch(r'\$\{"([^"]*)"\}', expr)
    return m.group(1) if m else expr


def iam_grants(tf: Terraform) -> set[tuple[str, str, str]]:
    grants: set[tuple[str, str, str]] = set()
    for rtype, by_name in tf.resources.items():
        assert not rtype.endswith(("_iam_binding", "_iam_policy")), (
            f"{rtype} is authoritative: it would remove grants made outside this module"
        )
        if not rtype.endswith("_iam_member"):
            continue
        assert rtype in _TARGETS, f"{rtype}: unknown IAM resource, extend the test"
        attr, pattern = _TARGETS[rtype]
        for name, body in by_name.items():
            for key, value in _each_items(tf, body.get("for_each")):
                role = _literal(_subst(body["role"], key, value))
                principal = _principal(_subst(body["member"], key, value))
                if pattern is None:
                    target = "project"
                else:
                    raw = _subst(body[attr], key, value)
                    raw = re.sub(r'^\$\{"(.*)"\}$', r"\1", raw)
                    m = re.fullmatch(pattern, raw)
                    assert m, f"{rtype}.{name}: cannot read the {attr} {raw!r}"
                    target = f"{_KIND[rtype]}:{m.group(1)}"
                grants.add((principal, role, target))
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
    # Project-wide roles are limited to those with no narrower resource.
    project = {r for p, r, t in iam_grants(tf) if t == "project"}
    assert project <= {
        "roles/cloudsql.client",
        "roles/cloudsql.instanceUser",
        "roles/monitoring.metricWriter",
    }


def test_each_component_runs_as_its_own_service_account(tf: Terraform) -> None:
    functions = tf.resources["google_cloudfunctions2_function"]
    for function, component in contract.FUNCTION_COMPONENT.items():
        sa = functions[function]["service_config"][0]["service_account_email"]
        account = component.replace("_", "-")
        assert sa == f'${{google_service_account.component["{account}"].email}}', function
    job = tf.resource("google_cloud_run_v2_job", "trainer")["template"][0]["template"][0]
    assert job["service_account"] == '${google_service_account.component["trainer"].email}'
    accounts = set(tf.local_map("service_accounts"))
    assert {"health", "train-trigger", "trainer", "scheduler", "events"} <= accounts


# --- topics, triggers, schedules ----------------------------------------------------------


def test_topic_names_match_the_design(tf: Terraform) -> None:
    assert tf.variables["health_topic_name"]["default"] == contract.HEALTH_TOPIC
    assert tf.variables["retrain_topic_name"]["default"] == contract.RETRAIN_TOPIC
    topics = tf.resources["google_pubsub_topic"]
    assert topics["health"]["name"] == "${var.health_topic_name}"
    assert topics["retrain"]["name"] == "${var.retrain_topic_name}"
    assert topics["dead_letter"]["name"] == "${var.dead_letter_topic_name}"


def test_event_driven_functions_listen_to_their_topics_with_retries(tf: Terraform) -> None:
    functions = tf.resources["google_cloudfunctions2_function"]
    expected = {"health_pubsub": "health", "train_trigger": "retrain"}
    for name, topic in expected.items():
        trigger = functions[name]["event_trigger"][0]
        assert trigger["pubsub_topic"] == f"${{google_pubsub_topic.{topic}.id}}", name
        assert trigger["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
        assert trigger["retry_policy"] == "RETRY_POLICY_RETRY", f"{name}: retries must be on"
        assert trigger["service_account_email"].endswith('component["events"].email}')
    assert "event_trigger" not in functions["health_http"]


def test_dead_letters_are_kept_and_attached(tf: Terraform) -> None:
    sub = tf.resource("google_pubsub_subscription", "dead_letter")
    assert sub["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert sub["expiration_policy"][0]["ttl"] == "", "the dead-letter subscription must not expire"
    triggers = tf.outputs["eventarc_triggers"]["value"]
    assert set(triggers) == {"health_pubsub", "train_trigger"}
    script = TERRAFORM_DIR / "scripts" / "attach_dead_letters.sh"
    text = script.read_text(encoding="utf-8")
    assert "--dead-letter-topic" in text and "roles/pubsub.subscriber" in text
    assert script.stat().st_mode & 0o111, "attach_dead_letters.sh must be executable"
    cloudbuild = (ROOT / "cloudbuild.yaml").read_text(encoding="utf-8")
    assert "terraform/scripts/attach_dead_letters.sh" in cloudbuild


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
    assert outer["task_count"] == "${var.trainer_task_count}"
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
        "eventarc",
        "pubsub",
        "cloudscheduler",
        "sqladmin",
        "secretmanager",
        "monitoring",
        "artifactregistry",
        "cloudbuild",
    ):
        assert f"{needed}.googleapis.com" in apis, needed


def test_body_encoding_helper_rejects_plain_bodies() -> None:
    with pytest.raises(AssertionError):
        _decoded_body({"http_target": [{"body": base64.b64encode(b"{}").decode()}]})


def test_terraform_files_have_no_tabs_or_trailing_spaces() -> None:
    for path in TERRAFORM_DIR.glob("*.tf"):
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            assert "\t" not in line and line == line.rstrip(), f"{path.name}:{n}"

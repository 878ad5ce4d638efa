"""docker-compose.yml, .env.example and cloudbuild.yaml agree with the contract.

No Docker or Cloud Build here: the files are parsed and checked for what they promise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra import infra_contract as contract
from tests.infra.hcl import load

ROOT = Path(__file__).resolve().parents[2]

# On one machine the database is a URL and there is no Google project or audience.
# Locally there are no ID tokens (no audience or allowed callers) and the trainer runs one
# task with an in-memory Optuna study. The hand-over to Dataflow and a BigQuery data plane
# (issue 24) exist on Google Cloud only.
GCP_ONLY = (
    contract.DB_VARS
    | contract.HEALTH_ENGINE_VARS
    | contract.HEALTH_SCALE_VARS
    | {
        "GCP_PROJECT",
        "HEALTH_AUDIENCE",
        "HEALTH_ALLOWED_CALLERS",
        "TRAINER_JOB",
        "OPTUNA_STORAGE",
        "OPTUNA_DATABASE",
    }
)
COMPOSE_COMPONENT = {
    "health": "health",
    "health-pubsub": "health_pubsub",
    "train-trigger": "train_trigger",
    "trainer": "trainer",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cloudbuild() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cloudbuild.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("service", sorted(COMPOSE_COMPONENT))
def test_compose_services_get_what_their_component_reads(
    compose: dict[str, Any], service: str
) -> None:
    env = compose["services"][service]["environment"]
    component = COMPOSE_COMPONENT[service]
    needed = (contract.COMPONENT_ENV[component] - GCP_ONLY) | {"DATABASE_URL"}
    assert needed - set(env) == set(), f"{service} lacks {sorted(needed - set(env))}"


def test_compose_mirrors_the_local_chain(compose: dict[str, Any]) -> None:
    services = compose["services"]
    health = services["health"]["environment"]
    assert health["RETRAIN_TOPIC"] == "http://train-trigger:8080/"
    assert health["ALLOW_UNAUTHENTICATED"] == "0"
    assert services["train-trigger"]["environment"]["TRAINER_JOB"] == "local"
    assert services["migrate"]["build"]["dockerfile"] == "jobs/trainer/Dockerfile"
    for name, target in (("health", "health_http"), ("health-pubsub", "health_pubsub")):
        command = services[name]["command"]
        assert command[command.index("--target") + 1] == target
    assert "on_retrain_request" in services["train-trigger"]["command"][0]
    build = services["health"]["build"]["dockerfile_inline"]
    assert "scripts/stage_functions.py" in build, "functions are built from the staged folder"
    for spec in services.values():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{port}: publish on loopback only"


def test_env_example_defines_every_compose_variable_with_placeholders() -> None:
    compose_text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{(\w+)(?::?[-?][^}]*)?\}", compose_text))
    example = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    assert used - set(example) == set(), f".env.example lacks {sorted(used - set(example))}"
    for key, value in example.items():
        if re.search(r"PASS|TOKEN|SECRET|PASSWORD", key):
            assert value.startswith("change-me"), f"{key} must hold a placeholder"


def test_env_files_with_values_are_not_committed() -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored, ".env (real values) must stay out of git"
    assert "*.tfvars" in ignored, "terraform.tfvars (project values) must stay out of git"


def _script(step: dict[str, Any]) -> str:
    return " ".join(str(a) for a in step.get("args", []))


def _steps(cloudbuild: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in cloudbuild["steps"]}


def _after(steps: dict[str, dict[str, Any]], step: str) -> set[str]:
    """Every step `step` waits for, directly or not."""
    seen: set[str] = set()
    todo = list(steps[step].get("waitFor", []))
    while todo:
        name = todo.pop()
        if name != "-" and name not in seen:
            seen.add(name)
            todo.extend(steps[name].get("waitFor", []))
    return seen


def test_cloudbuild_checks_before_it_plans(cloudbuild: dict[str, Any]) -> None:
    steps = _steps(cloudbuild)
    assert "make test-fast" in _script(steps["unit-tests"])
    assert _script(steps["stage-functions"]) == "scripts/stage_functions.py"
    assert _script(steps["terraform-fmt"]).startswith("fmt -check")
    assert "terraform validate" in _script(steps["terraform-validate"])
    checkov = _script(steps["checkov"])
    assert "requirements/checkov.txt" in checkov and "checkov --directory terraform" in checkov
    before_plan = _after(steps, "terraform-plan")
    assert {"unit-tests", "terraform-fmt", "terraform-validate", "checkov", "push-trainer"} <= (
        before_plan
    )
    plan = _script(steps["terraform-plan"])
    assert "-out=tfplan" in plan
    assert "trainer_image=$$(cat /workspace/trainer_image.txt)" in plan
    assert "plans/$BUILD_ID/" in _script(steps["keep-plan"]), "the plan is kept for review"


@pytest.fixture(scope="module")
def apply_build() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cloudbuild-apply.yaml").read_text(encoding="utf-8"))


def _bootstrap() -> str:
    return (ROOT / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")


def _bash_array(text: str, name: str) -> list[str]:
    m = re.search(rf"^{name}=\((.*?)^\)", text, re.S | re.M)
    assert m, f"bootstrap.sh has no array {name}"
    items = [line.split("#")[0].strip() for line in m.group(1).splitlines()]
    return [item for item in items if item]


def test_the_plan_build_cannot_apply(cloudbuild: dict[str, Any]) -> None:
    """Issue 25: `_APPLY=true` applied with no gate at all. The plan configuration has no
    apply step and no switch: it runs as the read-only planner and saves the plan."""
    text = (ROOT / "cloudbuild.yaml").read_text(encoding="utf-8")
    assert "_APPLY" not in cloudbuild["substitutions"] and "_APPLY" not in text
    scripts = " ".join(_script(s) for s in cloudbuild["steps"])
    assert "terraform apply" not in scripts and "-target" not in scripts
    planner = "/forecastguard-planner@$PROJECT_ID.iam.gserviceaccount.com"
    assert cloudbuild["serviceAccount"].endswith(planner)
    steps = _steps(cloudbuild)
    plan = _script(steps["terraform-plan"])
    assert "terraform plan -lock=false -out=tfplan" in plan
    assert '-var="migration_token=$BUILD_ID"' in plan
    keep = _script(steps["keep-plan"])
    assert "plan-bundle.tgz" in keep and "SHA256SUMS" in keep
    assert "--no-clobber" in keep and "plans/$BUILD_ID/" in keep


def test_the_apply_consumes_the_saved_reviewed_plan(apply_build: dict[str, Any]) -> None:
    """Issue 25: the apply re-planned with -auto-approve (another image digest), so what was
    reviewed was never what was applied, and a targeted step was never shown. Now the apply
    build applies the plan file the plan build saved, after checking and printing it."""
    steps = _steps(apply_build)
    assert [s["id"] for s in apply_build["steps"]] == [
        "fetch-plan",
        "show-plan",
        "terraform-apply",
        "first-champion",
    ]
    deployer = "/forecastguard-deployer@$PROJECT_ID.iam.gserviceaccount.com"
    assert apply_build["serviceAccount"].endswith(deployer)
    assert apply_build["substitutions"]["_PLAN_BUILD_ID"] == ""
    fetch = _script(steps["fetch-plan"])
    assert '[ -n "${_PLAN_BUILD_ID}" ] || {' in fetch, "no plan id, no apply"
    assert "plans/${_PLAN_BUILD_ID}/" in fetch and "sha256sum -c SHA256SUMS" in fetch
    assert "terraform show -no-color tfplan" in _script(steps["show-plan"])
    apply = _script(steps["terraform-apply"])
    commands = [c.strip() for c in apply.split("\n") if c.strip().startswith("terraform ")]
    applies = [c for c in commands if c.startswith("terraform apply")]
    assert applies == ["terraform apply -input=false tfplan"], applies
    text = (ROOT / "cloudbuild-apply.yaml").read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for forbidden in ("terraform plan", "-auto-approve", "-target", "-var=", "TF_VAR_"):
        assert forbidden not in text, f"the apply must not {forbidden}: it applies the saved plan"
    for step in ("show-plan", "terraform-apply"):
        assert steps[step]["dir"] == "/workspace/reviewed/terraform"
    assert {"fetch-plan", "show-plan"} <= _after(steps, "terraform-apply")


def test_the_first_deploy_ends_with_a_serving_champion(apply_build: dict[str, Any]) -> None:
    """Issue 25: the daily forecast failed with NoChampion until a first training that
    nothing started. After the apply, a project without champion.json gets a training run
    (its end: the trained model or the best baseline serves), waited for and checked."""
    steps = _steps(apply_build)
    first = _script(steps["first-champion"])
    assert "terraform-apply" in _after(steps, "first-champion")
    assert "/champion.json" in first
    assert "gcloud run jobs execute" in first and "--wait" in first
    assert "--args=--mode,train" in first
    assert apply_build["substitutions"]["_FIRST_TRAINING"] == "auto"
    assert '[ "${_FIRST_TRAINING}" = "skip" ]' in first
    outputs = set(re.findall(r"terraform output -raw (\w+)", _script(steps["terraform-apply"])))
    assert outputs == {"artifact_uri", "trainer_job_name"}


def test_bootstrap_gates_the_deployer() -> None:
    """Issue 25: nobody got the approver role, the plan trigger ran as the deployer, and
    the deployer's Project IAM Admin could make it Owner."""
    text = _bootstrap()
    assert "--role=roles/cloudbuild.builds.approver" in text
    # Project IAM Admin only with a condition on the roles it may grant, and those cover
    # every project role Terraform grants.
    binding = text[text.index("--role=roles/resourcemanager.projectIamAdmin") :]
    binding = binding[: binding.index(">/dev/null")]
    assert (
        "expression=api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])"
        ".hasOnly([${grantable%,}])"
    ) in binding, "projectIamAdmin must carry the modifiedGrantsByRole condition"
    assert "roles/resourcemanager.projectIamAdmin" not in _bash_array(text, "DEPLOYER_ROLES")
    from tests.infra.test_terraform_wiring import iam_grants

    project_roles = {r for _p, r, t in iam_grants(load()) if t.startswith("project")}
    grantable = set(_bash_array(text, "GRANTABLE_ROLES"))
    assert project_roles <= grantable, project_roles - grantable
    assert not grantable & {"roles/owner", "roles/editor", "roles/resourcemanager.projectIamAdmin"}
    # Secrets through a custom role that cannot read values.
    assert "roles/secretmanager.admin" not in text
    permissions = _bash_array(text, "SECRET_PERMISSIONS")
    assert "secretmanager.versions.add" in permissions
    assert "secretmanager.versions.access" not in permissions
    # The planner reads and plans; it is what the push trigger runs as.
    assert set(_bash_array(text, "PLANNER_ROLES")) == {
        "roles/viewer",
        "roles/iam.securityReviewer",
        "roles/logging.logWriter",
    }
    plan = text[text.index("--name=forecastguard-plan") :]
    plan = plan[: plan.index("--substitutions")]
    assert "--build-config=cloudbuild.yaml" in plan and "$PLANNER_EMAIL" in plan
    # The apply trigger: manual, approval required, the deployer, the apply configuration.
    start = text.index("--name=forecastguard-apply")
    apply = text[start : text.index("\nfi", start)]
    assert "triggers create manual" in text[start - 60 : start]
    assert "--require-approval" in apply and "--build-config=cloudbuild-apply.yaml" in apply
    assert "$DEPLOYER_EMAIL" in apply
    # You may submit builds as the planner, never as the deployer.
    acts_as = re.findall(r'service-accounts add-iam-policy-binding "\$(\w+)"', text)
    assert acts_as == ["PLANNER_EMAIL"], acts_as


def test_bootstrap_enables_every_api_terraform_uses() -> None:
    """Issue 25: secrets, accounts, Cloud SQL, topics and descriptors were created right
    after Terraform enabled their APIs (403 "API not enabled"). bootstrap.sh enables them
    all first, and waits until they are listed."""
    text = _bootstrap()
    tf = load()
    tf_apis = set(re.findall(r'"([a-z]+\.googleapis\.com)"', tf.texts["apis.tf"]))
    private = set(re.findall(r'"([a-z]+\.googleapis\.com)"', tf.locals["private_ip_apis"]))
    listed = set(_bash_array(text, "APIS"))
    assert tf_apis - private <= listed, tf_apis - private - listed
    # The private-IP ones only with SQL_PRIVATE_IP=1 (Compute Engine is not needed otherwise).
    assert private and private == set(_bash_array(text, "PRIVATE_APIS"))
    assert 'APIS+=("${PRIVATE_APIS[@]}")' in text
    assert 'gcloud services enable --project="$PROJECT" "${APIS[@]}"' in text
    assert "gcloud services list --enabled" in text


def test_cloudbuild_runs_as_the_bootstrapped_build_accounts(
    cloudbuild: dict[str, Any], apply_build: dict[str, Any]
) -> None:
    bootstrap = _bootstrap()
    names = dict(re.findall(r'^(DEPLOYER|PLANNER)="([\w-]+)"$', bootstrap, re.M))
    assert set(names) == {"DEPLOYER", "PLANNER"}, "bootstrap.sh names both build accounts"
    deployer = f"{names['DEPLOYER']}@$PROJECT_ID.iam.gserviceaccount.com"
    planner = f"{names['PLANNER']}@$PROJECT_ID.iam.gserviceaccount.com"
    assert cloudbuild["serviceAccount"] == f"projects/$PROJECT_ID/serviceAccounts/{planner}"
    assert apply_build["serviceAccount"] == f"projects/$PROJECT_ID/serviceAccounts/{deployer}"
    for config in (cloudbuild, apply_build):
        assert config["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    # Terraform learns who deploys (Service Account User on each component account only).
    assert f"TF_VAR_deployer_service_account={deployer}" in cloudbuild["options"]["env"]
    roles = set(_bash_array(bootstrap, "DEPLOYER_ROLES"))
    assert roles, "bootstrap.sh lists the build account's roles"
    assert not roles & {"roles/owner", "roles/editor", "roles/iam.serviceAccountUser"}
    assert "roles/logging.logWriter" in roles
    # The state bucket, the APIs and the image repository come from the bootstrap.
    assert "--versioning" in bootstrap and "--public-access-prevention" in bootstrap
    assert "gcloud artifacts repositories create" in bootstrap
    assert "--require-approval" in bootstrap, "the apply trigger waits for a person"
    assert (ROOT / "scripts" / "bootstrap.sh").stat().st_mode & 0o111
    tf = load()
    assert "google_artifact_registry_repository.images" in tf.texts["artifact_registry.tf"]
    assert "import {" in tf.texts["artifact_registry.tf"], "Terraform adopts the repository"


def test_cloudbuild_records_and_caches_the_image(cloudbuild: dict[str, Any]) -> None:
    steps = _steps(cloudbuild)
    image = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_AR_REPO}/trainer"
    build = _script(steps["build-trainer"])
    assert "--file=jobs/trainer/Dockerfile" in build
    assert f"--cache-from={image}:latest" in build
    assert f"--tag={image}:$BUILD_ID" in build and f"--tag={image}:latest" in build
    assert f"docker pull {image}:latest" in _script(steps["pull-cache"])
    push = _script(steps["push-trainer"])
    assert "RepoDigests" in push and f'docker push "{image}:latest"' in push
    assert cloudbuild["images"] == [f"{image}:$BUILD_ID"]


def test_trainer_dockerfile_caches_dependencies_and_pins_its_base() -> None:
    text = (ROOT / "jobs" / "trainer" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim@sha256:[0-9a-f]{64}$", text, re.M)
    logical = text.replace("\\\n", " ").splitlines()  # join continuation lines
    lines = [line for line in logical if line.startswith(("COPY", "RUN"))]
    first_code = next(i for i, line in enumerate(lines) if line.startswith("COPY shared/ "))
    deps = next(i for i, line in enumerate(lines) if "pip install" in line)
    assert deps < first_code, "dependencies are installed before the code is copied"
    code_install = next(
        line for line in lines[first_code:] if line.startswith("RUN") and "pip install" in line
    )
    assert "--no-deps" in code_install, "the code layer must not install dependencies"


@pytest.mark.parametrize("config", ["cloudbuild.yaml", "cloudbuild-apply.yaml"])
def test_cloudbuild_reads_outputs_and_variables_that_exist(config: str) -> None:
    tf = load()
    text = (ROOT / config).read_text(encoding="utf-8")
    cloudbuild = yaml.safe_load(text)
    for var in set(re.findall(r'-var="?(\w+)=', text)) | set(re.findall(r"TF_VAR_(\w+)=", text)):
        assert var in tf.variables, f"cloudbuild sets unknown variable {var}"
    for output in set(re.findall(r"terraform output -raw (\w+)", text)):
        assert output in tf.outputs, f"cloudbuild reads unknown output {output}"
    for target in set(re.findall(r"-target=(google_\w+)\.(\w+)", text)):
        assert target[1] in tf.resources[target[0]], target
    # Built-in and declared substitutions only.
    declared = set(cloudbuild["substitutions"])
    for sub in set(re.findall(r"\$\{(_\w+)\}", text)):
        assert sub in declared, f"undeclared substitution {sub}"

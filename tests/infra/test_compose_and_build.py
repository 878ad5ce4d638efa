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
# task with an in-memory Optuna study.
GCP_ONLY = contract.DB_VARS | {
    "GCP_PROJECT",
    "HEALTH_AUDIENCE",
    "HEALTH_ALLOWED_CALLERS",
    "TRAINER_JOB",
    "OPTUNA_STORAGE",
    "OPTUNA_DATABASE",
}
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
    assert "terraform plan -out=/workspace/tfplan" in plan
    assert "trainer_image=$$(cat /workspace/trainer_image.txt)" in plan
    assert "plans/$BUILD_ID/" in _script(steps["keep-plan"]), "the plan is kept for review"


def test_cloudbuild_gates_the_apply_and_migrates_before_traffic(
    cloudbuild: dict[str, Any],
) -> None:
    steps = _steps(cloudbuild)
    order = [s["id"] for s in cloudbuild["steps"]]
    assert cloudbuild["substitutions"]["_APPLY"] == "false", "plan only unless asked"
    for step in ("apply-migrate-job", "migrate", "terraform-apply"):
        assert '[ "${_APPLY}" = "true" ] || exit 0' in _script(steps[step]), step
        assert "terraform-plan" in _after(steps, step), f"{step} before the plan"
    # The migration job gets the new image first, runs to completion, then the rest applies.
    targeted = _script(steps["apply-migrate-job"])
    assert "-target=google_cloud_run_v2_job.migrate" in targeted
    assert "terraform output -raw migrate_job" in targeted
    migrate = _script(steps["migrate"])
    assert "gcloud run jobs execute" in migrate and "--wait" in migrate
    assert "migrate" in _after(steps, "terraform-apply")
    assert order.index("migrate") < order.index("terraform-apply")
    assert "terraform apply -auto-approve /workspace/tfplan-apply" in _script(
        steps["terraform-apply"]
    )
    assert "attach-dead-letters" not in steps


def test_cloudbuild_runs_as_the_bootstrapped_build_account(cloudbuild: dict[str, Any]) -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    m = re.search(r'^DEPLOYER="([\w-]+)"$', bootstrap, re.M)
    assert m, "bootstrap.sh names the build account"
    account = f"{m.group(1)}@$PROJECT_ID.iam.gserviceaccount.com"
    assert cloudbuild["serviceAccount"] == f"projects/$PROJECT_ID/serviceAccounts/{account}"
    assert cloudbuild["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    # Terraform learns who deploys (Service Account User on each component account only).
    env = cloudbuild["options"]["env"]
    assert f"TF_VAR_deployer_service_account={account}" in env
    roles = set(re.findall(r"^\s+(roles/[\w.]+)", bootstrap, re.M))
    assert roles, "bootstrap.sh lists the build account's roles"
    assert not roles & {"roles/owner", "roles/editor", "roles/iam.serviceAccountUser"}
    assert "roles/logging.logWriter" in roles
    # The state bucket, the APIs and the image repository come from the bootstrap.
    assert "--versioning" in bootstrap and "--public-access-prevention" in bootstrap
    assert "gcloud services enable" in bootstrap
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


def test_cloudbuild_reads_outputs_and_variables_that_exist(cloudbuild: dict[str, Any]) -> None:
    tf = load()
    text = (ROOT / "cloudbuild.yaml").read_text(encoding="utf-8")
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

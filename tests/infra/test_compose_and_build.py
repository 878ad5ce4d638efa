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
GCP_ONLY = contract.DB_VARS | {"GCP_PROJECT", "HEALTH_AUDIENCE", "TRAINER_JOB"}
COMPOSE_COMPONENT = {
    "health": "health",
    "health-pubsub": "health",
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


def test_cloudbuild_runs_tests_builds_stages_and_applies(cloudbuild: dict[str, Any]) -> None:
    steps = {s["id"]: s for s in cloudbuild["steps"]}
    order = [s["id"] for s in cloudbuild["steps"]]
    assert "make test-fast" in _script(steps["unit-tests"])
    assert _script(steps["stage-functions"]) == "scripts/stage_functions.py"
    assert "--file=jobs/trainer/Dockerfile" in _script(steps["build-trainer"])
    assert "RepoDigests" in _script(steps["push-trainer"])
    apply = _script(steps["terraform-apply"])
    assert "terraform plan" in apply and "terraform apply" in apply
    assert "trainer_image=$$(cat /workspace/trainer_image.txt)" in apply
    assert set(steps["terraform-apply"]["waitFor"]) >= {"unit-tests", "push-trainer"}
    assert order.index("terraform-apply") < order.index("attach-dead-letters")
    init = _script(steps["terraform-bootstrap"])
    assert "-target=google_artifact_registry_repository.images" in init
    assert "backend-config" in init


def test_cloudbuild_reads_outputs_and_variables_that_exist(cloudbuild: dict[str, Any]) -> None:
    tf = load()
    text = (ROOT / "cloudbuild.yaml").read_text(encoding="utf-8")
    for var in set(re.findall(r'-var="(\w+)=', text)):
        assert var in tf.variables, f"cloudbuild sets unknown variable {var}"
    for output in set(re.findall(r'out\["(\w+)"\]', text)):
        assert output in tf.outputs, f"cloudbuild reads unknown output {output}"
    for target in set(re.findall(r"-target=(google_\w+)\.(\w+)", text)):
        assert target[1] in tf.resources[target[0]], target
    assert tf.outputs["topics"]["value"]["dead_letter"] == "${google_pubsub_topic.dead_letter.id}"
    # Built-in and declared substitutions only.
    declared = set(cloudbuild["substitutions"])
    for sub in set(re.findall(r"\$\{(_\w+)\}", text)):
        assert sub in declared, f"undeclared substitution {sub}"

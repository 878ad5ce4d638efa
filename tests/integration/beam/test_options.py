"""The settings a Dataflow launch passes reach the pipeline (issue 24): every launch
parameter is a declared template parameter and a pipeline option, the options become the
pipeline's Settings (checked as their variables are), and `--source=cloudsql` reads the
control database of those settings, as the Dataflow workers do."""

from __future__ import annotations

import json
import pickle
from datetime import date
from pathlib import Path

import pytest

pytest.importorskip(
    "apache_beam", reason="Beam tests run in .venv-beam (`make test` runs them there)"
)
from apache_beam.options.pipeline_options import PipelineOptions

from forecastguard.config import ConfigError, Settings
from forecastguard.health.dataflow import CONTROL_SOURCE, FORWARDED, build_launch
from health_beam.pipeline import HealthCheckOptions, run, settings_from_options
from health_beam.sources import SqlSource, make_source
from tests.integration.beam.test_pipeline import AS_OF, _data, _sqlite

METADATA = Path(__file__).resolve().parents[3] / "jobs" / "health_beam" / "metadata.json"
LAUNCHER = {
    "dataflow_template": "gs://b/fg/dataflow/templates/health_beam.json",
    "dataflow_region": "europe-west1",
    "gcp_project": "demo-project",
    "cloud_sql_instance": "demo-project:europe-west1:fg",
    "db_user": "health",
    "db_name": "forecastguard",
    "db_ip_type": "PRIVATE",
    "db_pass_secret": "fg-db-pass",
    "metrics_sink": "cloud-monitoring",
    "artifact_uri": "gs://b/fg",
    "retrain_topic": "projects/demo-project/topics/retrain-requests",
    "reference_days": "56",
}


def _check(params: dict[str, str]) -> HealthCheckOptions:
    return PipelineOptions([f"--{k}={v}" for k, v in params.items()]).view_as(HealthCheckOptions)


def test_every_launch_parameter_is_declared_and_an_option() -> None:
    params = build_launch(Settings.from_env({}, **LAUNCHER), date(2026, 5, 30)).parameters
    declared = {p["name"] for p in json.loads(METADATA.read_text())["parameters"]}
    assert set(params) <= declared
    assert set(FORWARDED) <= declared
    check = _check(params)
    for name, value in params.items():
        assert str(getattr(check, name)) == value, name


def test_the_options_become_the_settings() -> None:
    params = build_launch(Settings.from_env({}, **LAUNCHER), date(2026, 5, 30)).parameters
    settings = settings_from_options(Settings.from_env({}), _check(params))
    assert settings.cloud_sql_instance == "demo-project:europe-west1:fg"
    assert settings.db_ip_type == "PRIVATE" and settings.db_iam_auth is False
    assert settings.reference_days == 56 and settings.retrain_topic == LAUNCHER["retrain_topic"]
    assert settings.db_pass is None and settings.db_pass_secret == "fg-db-pass"
    with pytest.raises(ConfigError, match="DB_IP_TYPE"):
        settings_from_options(Settings.from_env({}), _check({"source": "x", "db_ip_type": "LAN"}))
    # The workers get the source with its settings (pickled into the job graph).
    source = pickle.loads(pickle.dumps(make_source(CONTROL_SOURCE, settings=settings)))
    assert isinstance(source, SqlSource) and source.settings == settings


def test_source_cloudsql_reads_the_control_database_of_the_settings(tmp_path) -> None:
    url = _sqlite(tmp_path / "control.db", *_data(60, seed=5))
    settings = Settings.from_env({}, database_url=url)
    argv = [f"--source={CONTROL_SOURCE}", f"--as_of={AS_OF}", "--window_days=30"]
    result = run([*argv, "--reference_days=30"], settings=settings)
    assert result["n_products"] == 60
    assert result["window_end"] == AS_OF.isoformat()

"""The scheduled check's hand-over to Dataflow (issue 24): launch the Flex Template.

A BigQuery installation (BIGQUERY_URL), or a check above HEALTH_MAX_INPROCESS_PRODUCTS
products, runs as the Beam pipeline of jobs/health_beam on Dataflow rather than in the
function (`forecastguard.health.engine.choose_engine`). The function launches the Flex
Template named by DATAFLOW_TEMPLATE through the real Dataflow client
(`FlexTemplatesServiceClient.launch_flex_template`) with every parameter the pipeline
needs: the data plane (BIGQUERY_URL, else the Cloud SQL control database), the window, the control database's settings (never the password:
the worker reads it from Secret Manager by DB_PASS_SECRET's name), the metrics sink, the
artifact location and the retrain topic. The job's name derives from the window end and
the Pub/Sub event id, so a redelivered event finds its job already running
(ALREADY_EXISTS) instead of launching a second one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from forecastguard.config import ConfigError, Settings
from forecastguard.logs import get_logger

log = get_logger(__name__)

# The settings the pipeline needs, each passed as the pipeline option (and Flex Template
# parameter) of the same name; jobs/health_beam reads them back into its Settings.
FORWARDED: tuple[str, ...] = (
    "gcp_project",
    "cloud_sql_instance",
    "db_user",
    "db_name",
    "db_ip_type",
    "db_iam_auth",
    "db_pass_secret",
    "metrics_sink",
    "artifact_uri",
    "retrain_topic",
    "reference_days",
)
# The `source` of a check whose sales are in the control database (Cloud SQL): the
# workers read them through the Cloud SQL settings above.
CONTROL_SOURCE = "cloudsql"


class LaunchError(RuntimeError):
    """The Dataflow launch failed; `retryable` when trying again may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Launch:
    """One Flex Template launch: what goes into `LaunchFlexTemplateRequest`."""

    project: str
    region: str
    template: str
    job_name: str
    parameters: dict[str, str]
    service_account: str | None = None
    temp_location: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def request(self) -> Any:
        """The request of the real client library."""
        from google.cloud import dataflow_v1beta3 as dataflow

        environment = dataflow.FlexTemplateRuntimeEnvironment(
            service_account_email=self.service_account or "",
            temp_location=self.temp_location or "",
            additional_user_labels=self.labels,
        )
        return dataflow.LaunchFlexTemplateRequest(
            project_id=self.project,
            location=self.region,
            launch_parameter=dataflow.LaunchFlexTemplateParameter(
                job_name=self.job_name,
                container_spec_gcs_path=self.template,
                parameters=self.parameters,
                environment=environment,
            ),
        )


def job_name(as_of: date, event_id: str | None) -> str:
    """`fg-health-<as_of>-<10 hex of the event id>`: Dataflow's name rules (lower case,
    digits, dashes; at most 63 characters), one name per event."""
    tag = hashlib.sha256((event_id or as_of.isoformat()).encode()).hexdigest()[:10]
    return f"fg-health-{as_of.isoformat()}-{tag}"


def worker_db_user(service_account: str) -> str:
    """The Cloud SQL (MySQL) IAM user of a service account: its email without the domain."""
    return service_account.split("@", 1)[0]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def build_launch(
    settings: Settings,
    as_of: date,
    window_days: int | None = None,
    event_id: str | None = None,
) -> Launch:
    """The launch of the check of the window ending `as_of`; ConfigError naming what is
    missing when the settings cannot launch one."""
    settings.require("dataflow_template", "dataflow_region", "gcp_project")
    if not settings.bigquery_url:
        # The workers reach Cloud SQL through the connector; a DATABASE_URL (a database
        # of this machine's network) is not theirs to reach.
        settings.require("cloud_sql_instance")
        if settings.database_url:
            raise ConfigError(
                "DATABASE_URL is set: a Dataflow job reads BIGQUERY_URL or Cloud SQL "
                "(CLOUD_SQL_INSTANCE), not a database URL"
            )
    parameters = {
        "source": settings.bigquery_url or CONTROL_SOURCE,
        "as_of": as_of.isoformat(),
        "window_days": str(window_days or settings.window_days),
    }
    for name in FORWARDED:
        value = getattr(settings, name)
        if value not in (None, "", ()):
            parameters[name] = _text(value)
    if settings.db_iam_auth and settings.dataflow_service_account:
        # With IAM database login the workers log in as their own account, not the
        # launcher's: its MySQL user is the email without the domain (terraform/dataflow.tf).
        parameters["db_user"] = worker_db_user(settings.dataflow_service_account)
    if settings.db_pass:
        # Never sent: the parameters are visible in the job's description.
        log.warning("DB_PASS is set but not passed to Dataflow: the worker uses DB_PASS_SECRET")
    return Launch(
        project=str(settings.gcp_project),
        region=str(settings.dataflow_region),
        template=str(settings.dataflow_template),
        job_name=job_name(as_of, event_id),
        parameters=parameters,
        service_account=settings.dataflow_service_account,
        temp_location=settings.dataflow_temp_location,
        labels={"app": "forecastguard", "check": "health"},
    )


def launch(launch: Launch, client: Any) -> dict[str, Any]:
    """Launch the job with `client` (a `FlexTemplatesServiceClient`: the service's, made
    once); its outcome ({launched, job_id, job_name, ...}). A job of the same name
    already there (a redelivered event) counts as launched. Raises `LaunchError`."""
    from google.api_core import exceptions

    outcome: dict[str, Any] = {
        "engine": "dataflow",
        "job_name": launch.job_name,
        "template": launch.template,
    }
    try:
        response = client.launch_flex_template(request=launch.request(), timeout=60)
    except exceptions.AlreadyExists:
        log.info("dataflow job already launched", extra={"job_name": launch.job_name})
        return {**outcome, "launched": True, "job_id": None, "already_running": True}
    except (
        exceptions.ServiceUnavailable,
        exceptions.DeadlineExceeded,
        exceptions.InternalServerError,
        exceptions.TooManyRequests,
    ) as exc:
        raise LaunchError(
            f"Dataflow launch of {launch.job_name} failed: {exc}", retryable=True
        ) from exc
    except exceptions.GoogleAPICallError as exc:
        raise LaunchError(
            f"Dataflow launch of {launch.job_name} refused: {exc}", retryable=False
        ) from exc
    job = response.job
    return {**outcome, "launched": True, "job_id": job.id or None}


SECRET_MANAGER = "https://secretmanager.googleapis.com"


def with_db_pass(
    settings: Settings, session: Any = None, endpoint: str = SECRET_MANAGER
) -> Settings:
    """`settings` with DB_PASS read from Secret Manager (the latest version of the secret
    DB_PASS_SECRET names, in GCP_PROJECT) when it is needed (password authentication) and
    not given: where a Dataflow worker or launcher makes its database engine, so the
    password never travels in the job's parameters or graph. `session`: an authorised
    requests session (default: the environment's credentials)."""
    import base64
    from dataclasses import replace

    if settings.db_pass or settings.db_iam_auth or not settings.db_pass_secret:
        return settings
    settings.require("gcp_project")
    if session is None:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        session = AuthorizedSession(credentials)
    name = f"projects/{settings.gcp_project}/secrets/{settings.db_pass_secret}/versions/latest"
    response = session.get(f"{endpoint}/v1/{name}:access", timeout=30)
    if response.status_code != 200:
        raise ConfigError(
            f"DB_PASS_SECRET {settings.db_pass_secret!r} could not be read from Secret "
            f"Manager (HTTP {response.status_code})"
        )
    data = base64.b64decode(response.json()["payload"]["data"]).decode("utf-8")
    return replace(settings, db_pass=data)

"""What each deployed component reads: the one list the infrastructure checks use.

Keep it in step with `forecastguard.config.Settings` (every field's environment variable
must be wired for at least one component, or be listed in `NOT_WIRED_ON_GCP`) and with the
functions' and the trainer's code. Terraform (terraform/locals.tf), docker-compose.yml and
.env.example are checked against it.
"""

from __future__ import annotations

DB_VARS = frozenset({"CLOUD_SQL_INSTANCE", "DB_USER", "DB_PASS", "DB_NAME", "DB_IAM_AUTH"})

# Environment variables each component's settings read on Google Cloud.
COMPONENT_ENV: dict[str, frozenset[str]] = {
    "health": DB_VARS
    | {
        "GCP_PROJECT",
        "METRICS_SINK",
        "RETRAIN_TOPIC",
        "HEALTH_API_TOKEN",
        "HEALTH_AUDIENCE",
        "ALLOW_UNAUTHENTICATED",
        "RMSE_THRESHOLD",
        "WINDOW_DAYS",
        "FDR_ALPHA",
        "MIN_SAMPLES",
        "STALE_DAYS",
        "DATA_DRIFT_UNHEALTHY",
        "LOG_LEVEL",
    },
    "train_trigger": DB_VARS | {"GCP_PROJECT", "TRAINER_JOB", "TRAINER_TIMEOUT_S", "LOG_LEVEL"},
    "trainer": DB_VARS
    | {
        "GCP_PROJECT",
        "ARTIFACT_URI",
        "HOLIDAY_COUNTRY",
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_USER",
        "SMTP_PASSWORD",
        "SMTP_STARTTLS",
        "REPORT_FROM",
        "REPORT_RECIPIENTS",
        "LOG_LEVEL",
        "TRAINER_MAX_RETRIES",
    },
}

# Set by train_trigger per run (Cloud Run job overrides), not by Terraform.
TRAINER_RUN_OVERRIDES = frozenset(
    {"REQUEST_ID", "REASON", "HEALTH_CHECK_ID", "WINDOW_START", "WINDOW_END"}
)

# Settings that no deployed component gets on Google Cloud, and why.
NOT_WIRED_ON_GCP: dict[str, str] = {
    "DATABASE_URL": "Cloud SQL is reached through the connector (CLOUD_SQL_INSTANCE ...)",
    "OPTUNA_STORAGE": "optional: the trainer keeps its Optuna study in memory by default",
    "TRAINER_COMMAND": "local runner only (TRAINER_JOB=local); on GCP the Cloud Run job runs",
    "TRAINER_LOG_DIR": "local runner only (TRAINER_JOB=local)",
}

# Values that must come from Secret Manager, never from plain environment variables.
SECRET_ENV = frozenset({"DB_PASS", "HEALTH_API_TOKEN", "SMTP_PASSWORD"})
# DB_PASS is a secret only with password authentication (DB_IAM_AUTH off).
CONDITIONAL_SECRET_ENV = frozenset({"DB_PASS"})

# Fixed values on Google Cloud.
GCP_FIXED_ENV = {"METRICS_SINK": "cloud-monitoring", "ALLOW_UNAUTHENTICATED": "0"}

# Pub/Sub topic names (DESIGN.md §1).
HEALTH_TOPIC = "health-check-requests"
RETRAIN_TOPIC = "retrain-requests"

# Function entry points (DESIGN.md §4): Terraform resource -> (source folder, entry point).
FUNCTIONS = {
    "health_http": ("health", "health_http"),
    "health_pubsub": ("health", "health_pubsub"),
    "train_trigger": ("train_trigger", "on_retrain_request"),
}
# Which component's settings each function's environment must satisfy.
FUNCTION_COMPONENT = {
    "health_http": "health",
    "health_pubsub": "health",
    "train_trigger": "train_trigger",
}

# The complete set of IAM grants (issue 7): (principal, role, resource kind).
# "project" means a project-wide binding; every other kind is bound on one resource.
ALLOWED_GRANTS = frozenset(
    {
        ("scheduler", "roles/pubsub.publisher", "pubsub_topic:health"),
        ("scheduler", "roles/run.jobsExecutorWithOverrides", "cloud_run_v2_job:trainer"),
        ("health", "roles/cloudsql.client", "project"),
        ("health", "roles/cloudsql.instanceUser", "project"),
        ("health", "roles/monitoring.metricWriter", "project"),
        ("health", "roles/pubsub.publisher", "pubsub_topic:retrain"),
        ("health", "roles/secretmanager.secretAccessor", "secret:health-api-token"),
        ("health", "roles/secretmanager.secretAccessor", "secret:db-pass"),
        ("train-trigger", "roles/cloudsql.client", "project"),
        ("train-trigger", "roles/cloudsql.instanceUser", "project"),
        ("train-trigger", "roles/run.jobsExecutorWithOverrides", "cloud_run_v2_job:trainer"),
        ("train-trigger", "roles/secretmanager.secretAccessor", "secret:db-pass"),
        ("trainer", "roles/cloudsql.client", "project"),
        ("trainer", "roles/cloudsql.instanceUser", "project"),
        ("trainer", "roles/storage.objectUser", "storage_bucket:artifacts"),
        ("trainer", "roles/secretmanager.secretAccessor", "secret:smtp-password"),
        ("trainer", "roles/secretmanager.secretAccessor", "secret:db-pass"),
        ("events", "roles/run.invoker", "cloud_run_service:health_pubsub"),
        ("events", "roles/run.invoker", "cloud_run_service:train_trigger"),
        ("pubsub-agent", "roles/iam.serviceAccountTokenCreator", "service_account:events"),
        ("pubsub-agent", "roles/pubsub.publisher", "pubsub_topic:dead_letter"),
        ("public-or-invokers", "roles/run.invoker", "cloud_run_service:health_http"),
    }
)

FORBIDDEN_ROLES = frozenset(
    {
        "roles/owner",
        "roles/editor",
        "roles/viewer",
        "roles/storage.admin",
        "roles/iam.serviceAccountUser",
        "roles/iam.securityAdmin",
        "roles/run.admin",
        "roles/pubsub.admin",
        "roles/secretmanager.admin",
        "roles/cloudsql.admin",
    }
)


def all_component_env() -> frozenset[str]:
    """Every variable some deployed component reads."""
    return frozenset().union(*COMPONENT_ENV.values())

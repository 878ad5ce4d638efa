"""What each deployed component reads: the one list the infrastructure checks use.

Keep it in step with `forecastguard.config.Settings` (every field's environment variable
must be wired for at least one component, or be listed in `NOT_WIRED_ON_GCP`) and with the
functions' and the trainer's code. Terraform (terraform/locals.tf), docker-compose.yml and
.env.example are checked against it.
"""

from __future__ import annotations

DB_VARS = frozenset(
    {"CLOUD_SQL_INSTANCE", "DB_USER", "DB_PASS", "DB_NAME", "DB_IAM_AUTH", "DB_IP_TYPE"}
)

# The health check's own settings (both health functions read them).
_HEALTH_CHECK = DB_VARS | {
    "GCP_PROJECT",
    "ARTIFACT_URI",  # where each check's HTML report is written
    "METRICS_SINK",
    "RETRAIN_TOPIC",
    "RMSE_THRESHOLD",
    "WINDOW_DAYS",
    "FDR_ALPHA",
    "MIN_SAMPLES",
    "STALE_DAYS",
    "DATA_DRIFT_UNHEALTHY",
    "MIN_DRIFT_EFFECT",
    "LOG_LEVEL",
}

# Issue 24, on Google Cloud only (locally: `forecastguard health --engine beam`,
# docs/scale.md). Where the checks run, read by both health functions (terraform/locals.tf
# health_engine_env), and the Flex Template launch, by health_pubsub only
# (health_scale_env). All empty, hence unset, without scale_enabled.
HEALTH_ENGINE_VARS = frozenset(
    {"DATAFLOW_TEMPLATE", "HEALTH_MAX_INPROCESS_PRODUCTS", "BIGQUERY_URL"}
)
HEALTH_SCALE_VARS = frozenset(
    {"DATAFLOW_REGION", "DATAFLOW_SERVICE_ACCOUNT", "DATAFLOW_TEMP_LOCATION", "DB_PASS_SECRET"}
)

# Environment variables each component's settings read on Google Cloud.
COMPONENT_ENV: dict[str, frozenset[str]] = {
    # The HTTPS endpoint also authenticates its callers, and knows where the checks run
    # (issue 24: on Dataflow it answers with the newest stored check).
    "health": _HEALTH_CHECK
    | {"HEALTH_API_TOKEN", "HEALTH_AUDIENCE", "HEALTH_ALLOWED_CALLERS", "ALLOW_UNAUTHENTICATED"}
    | HEALTH_ENGINE_VARS,
    # Reached only by its push subscription (Cloud Run checks the OIDC token): no token.
    # Issue 24: the scheduled check picks its engine and launches the Flex Template
    # (empty, hence unset, without scale_enabled; BIGQUERY_URL only for a BigQuery
    # installation; DB_PASS_SECRET, the secret's name the workers read, with passwords).
    "health_pubsub": _HEALTH_CHECK | HEALTH_ENGINE_VARS | HEALTH_SCALE_VARS,
    "train_trigger": DB_VARS | {"GCP_PROJECT", "TRAINER_JOB", "TRAINER_TIMEOUT_S", "LOG_LEVEL"},
    "trainer": DB_VARS
    | {
        "GCP_PROJECT",
        "ARTIFACT_URI",
        "HOLIDAY_COUNTRY",
        # The shared study's database; the trainer builds its URL from DB_PASS.
        "OPTUNA_DATABASE",
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_USER",
        "SMTP_PASSWORD",
        "SMTP_STARTTLS",
        "REPORT_FROM",
        "REPORT_RECIPIENTS",
        "LOG_LEVEL",
        "TRAINER_MAX_RETRIES",
        # It starts the next queued retrain request itself when a run ends.
        "TRAINER_JOB",
        "TRAINER_TIMEOUT_S",
        # Issue 24: a BigQuery installation's forecasts also go to the data plane.
        "BIGQUERY_URL",
        # Issue 26: products per partition (the job's task count follows the catalogue).
        "TRAIN_PARTITION_SIZE",
    },
    # The migration job: `forecastguard db upgrade` needs the database only.
    "migrate": DB_VARS | {"GCP_PROJECT", "LOG_LEVEL"},
}

# Set by train_trigger per run (Cloud Run job overrides), not by Terraform.
TRAINER_RUN_OVERRIDES = frozenset(
    {"REQUEST_ID", "REASON", "HEALTH_CHECK_ID", "WINDOW_START", "WINDOW_END"}
)

# Settings that no deployed component gets on Google Cloud, and why.
NOT_WIRED_ON_GCP: dict[str, str] = {
    "DATABASE_URL": "Cloud SQL is reached through the connector (CLOUD_SQL_INSTANCE ...)",
    "OPTUNA_STORAGE": "the trainer builds the study's URL from DB_PASS and OPTUNA_DATABASE "
    "(one database credential, no second secret)",
    "TRAINER_COMMAND": "local runner only (TRAINER_JOB=local); on GCP the Cloud Run job runs",
    "TRAINER_LOG_DIR": "local runner only (TRAINER_JOB=local)",
    "DB_CONNECT_TIMEOUT_S": "the library's default database timeouts apply on Google Cloud",
    "DB_READ_TIMEOUT_S": "the library's default database timeouts apply on Google Cloud",
    "REFERENCE_DAYS": "the health check's default reference (90 days, issue 23) applies "
    "on Google Cloud; docs/health.md measures its time and memory",
    "RETRAIN_BACKOFF_DAYS": "the health check's default retrain back-off (7 days, doubled "
    "with each rejected challenger; issue 23) applies on Google Cloud",
    "DB_WRITE_TIMEOUT_S": "the library's default database timeouts apply on Google Cloud",
    "DB_STATEMENT_TIMEOUT_S": "the library's default database timeouts apply on Google Cloud",
    "SALES_MAX_UNITS": "read by `forecastguard load-sales` only, run by an operator",
    "SALES_MAX_BYTES": "read by `forecastguard load-sales` only, run by an operator",
}

# Values that must come from Secret Manager, never from plain environment variables.
SECRET_ENV = frozenset({"DB_PASS", "HEALTH_API_TOKEN", "OPTUNA_STORAGE", "SMTP_PASSWORD"})
# Secrets that exist only in some configurations: DB_PASS with password authentication
# (DB_IAM_AUTH off), SMTP_PASSWORD when a person provides it (the email is optional).
# (OPTUNA_STORAGE is not wired on Google Cloud; if it ever is, it must be a secret.)
CONDITIONAL_SECRET_ENV = frozenset({"DB_PASS", "SMTP_PASSWORD"})

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
    "health_pubsub": "health_pubsub",
    "train_trigger": "train_trigger",
}

# The complete set of IAM grants: (principal, role, resource kind). "project" is a
# project-wide binding, "project?sql" one conditioned on the Cloud SQL instance; every other
# kind is bound on one resource. "deployer" is the Cloud Build account (acts as each
# component account, never project-wide).
COMPONENT_ACCOUNTS = (
    "health",
    "train-trigger",
    "trainer",
    "migrate",
    "scheduler",
    "events",
    "fn-build",
)
ALLOWED_GRANTS = frozenset(
    {
        ("scheduler", "roles/pubsub.publisher", "pubsub_topic:health"),
        ("scheduler", "roles/run.jobsExecutorWithOverrides", "cloud_run_v2_job:trainer"),
        ("health", "roles/cloudsql.client", "project?sql"),
        ("health", "roles/cloudsql.instanceUser", "project?sql"),
        ("health", "roles/monitoring.metricWriter", "project"),
        ("health", "roles/pubsub.publisher", "pubsub_topic:retrain"),
        ("health", "roles/secretmanager.secretAccessor", "secret:health-api-token"),
        ("health", "roles/secretmanager.secretAccessor", "secret:db-pass"),
        ("train-trigger", "roles/cloudsql.client", "project?sql"),
        ("train-trigger", "roles/cloudsql.instanceUser", "project?sql"),
        ("train-trigger", "roles/run.jobsExecutorWithOverrides", "cloud_run_v2_job:trainer"),
        ("train-trigger", "roles/run.viewer", "cloud_run_v2_job:trainer"),
        ("train-trigger", "roles/secretmanager.secretAccessor", "secret:db-pass"),
        ("trainer", "roles/cloudsql.client", "project?sql"),
        ("trainer", "roles/cloudsql.instanceUser", "project?sql"),
        # check reports, under <artifact_prefix>/health/ only (not champion.json, not runs)
        ("health", "roles/storage.objectUser", "storage_bucket:artifacts?health"),
        ("trainer", "roles/storage.objectUser", "storage_bucket:artifacts"),
        ("trainer", "roles/run.jobsExecutorWithOverrides", "cloud_run_v2_job:trainer"),
        ("trainer", "roles/run.viewer", "cloud_run_v2_job:trainer"),
        ("trainer", "roles/secretmanager.secretAccessor", "secret:smtp-password"),
        ("trainer", "roles/secretmanager.secretAccessor", "secret:db-pass"),
        ("migrate", "roles/cloudsql.client", "project?sql"),
        ("migrate", "roles/cloudsql.instanceUser", "project?sql"),
        ("migrate", "roles/secretmanager.secretAccessor", "secret:db-pass"),
        ("events", "roles/run.invoker", "cloud_run_service:health_pubsub"),
        ("events", "roles/run.invoker", "cloud_run_service:train_trigger"),
        ("fn-build", "roles/logging.logWriter", "project"),
        # Gen2 builds read the source copy in Google's gcf-v2-sources-<number>-<region>
        ("fn-build", "roles/storage.objectViewer", "project?gcf-sources"),
        ("fn-build", "roles/storage.objectViewer", "storage_bucket:sources"),
        # the functions' own image repository, never the trainer's
        ("fn-build", "roles/artifactregistry.writer", "artifact_registry:functions"),
        ("pubsub-agent", "roles/iam.serviceAccountTokenCreator", "service_account:events"),
        ("pubsub-agent", "roles/pubsub.publisher", "pubsub_topic:dead_letter"),
        ("pubsub-agent", "roles/pubsub.subscriber", "pubsub_subscription:push"),
        ("callers-or-public", "roles/run.invoker", "cloud_run_service:health_http"),
    }
    # Issue 24, with scale_enabled: the Dataflow workers (dataflow.worker, BigQuery jobs and
    # read sessions, data editor on the dataset only, temp/staging under <prefix>/dataflow/
    # only), the health account that launches the Flex Template (health_pubsub's hand-over:
    # jobs, acting as the worker account only, reading the template spec only) and, on a
    # BigQuery installation, the trainer writing its forecasts to the dataset.
    | {
        ("dataflow", "roles/dataflow.worker", "project"),
        ("dataflow", "roles/bigquery.jobUser", "project"),
        ("dataflow", "roles/bigquery.readSessionUser", "project"),
        ("dataflow", "roles/monitoring.metricWriter", "project"),
        ("dataflow", "roles/cloudsql.client", "project?sql"),
        ("dataflow", "roles/cloudsql.instanceUser", "project?sql"),
        ("dataflow", "roles/bigquery.dataEditor", "bigquery_dataset:scale"),
        ("dataflow", "roles/storage.objectUser", "storage_bucket:artifacts?dataflow"),
        ("dataflow", "roles/storage.objectUser", "storage_bucket:artifacts?health"),
        ("dataflow", "roles/pubsub.publisher", "pubsub_topic:retrain"),
        ("dataflow", "roles/secretmanager.secretAccessor", "secret:db-pass"),
        ("dataflow", "roles/artifactregistry.reader", "artifact_registry:images"),
        ("health", "roles/dataflow.developer", "project"),
        ("health", "roles/iam.serviceAccountUser", "service_account:dataflow"),
        ("health", "roles/storage.objectViewer", "storage_bucket:artifacts?dataflow-templates"),
        ("trainer", "roles/bigquery.dataEditor", "bigquery_dataset:scale"),
        ("trainer", "roles/bigquery.jobUser", "project"),
    }
    | {
        ("deployer", "roles/iam.serviceAccountUser", f"service_account:{a}")
        for a in COMPONENT_ACCOUNTS
    }
)

# Project-wide roles allowed without a condition (no narrower resource exists).
PROJECT_ROLES = frozenset(
    {
        "roles/monitoring.metricWriter",
        "roles/logging.logWriter",
        # issue 24: no narrower resource for running Dataflow workers or jobs, BigQuery
        # jobs or Storage Read sessions
        "roles/dataflow.worker",
        "roles/dataflow.developer",
        "roles/bigquery.jobUser",
        "roles/bigquery.readSessionUser",
    }
)
# Roles allowed project-wide only with the Cloud SQL instance condition.
SQL_CONDITIONED_ROLES = frozenset({"roles/cloudsql.client", "roles/cloudsql.instanceUser"})

# Never granted anywhere (Service Account User is granted to the deployer on single
# accounts only, checked with the grants).
FORBIDDEN_ROLES = frozenset(
    {
        "roles/owner",
        "roles/editor",
        "roles/viewer",
        "roles/storage.admin",
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

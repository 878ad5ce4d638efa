# Names and the environment of each component: the one place that maps Terraform
# resources onto forecastguard's settings (DESIGN.md §4, tests/infra/infra_contract.py).

locals {
  artifact_bucket_name = coalesce(var.artifact_bucket_name, "${var.project_id}-${var.name_prefix}-artifacts")
  sources_bucket_name  = "${var.project_id}-${var.name_prefix}-function-sources"

  function_names = {
    health_http   = "${var.name_prefix}-health"
    health_pubsub = "${var.name_prefix}-health-pubsub"
    train_trigger = "${var.name_prefix}-train-trigger"
  }
  trainer_job_name = "${var.name_prefix}-trainer"
  migrate_job_name = "${var.name_prefix}-migrate"
  # The job's full name (the API's and TRAINER_JOB's format), known before the job exists:
  # the trainer's own environment names it, which a reference to the resource cannot do.
  trainer_job_id = "projects/${var.project_id}/locations/${var.region}/jobs/${local.trainer_job_name}"

  # The Google ID tokens the HTTPS endpoint accepts carry this audience: the function's URL.
  health_url = "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.function_names.health_http}"

  cloud_sql_instance = var.create_sql_instance ? google_sql_database_instance.main[0].connection_name : var.existing_sql_instance
  # project:region:instance -> the instance's resource name, for IAM Conditions.
  sql_instance_resource = "projects/${split(":", local.cloud_sql_instance)[0]}/instances/${element(split(":", local.cloud_sql_instance), 2)}"

  # With IAM database authentication each component logs in as its own service account
  # (for MySQL the user name is the service account email without the domain).
  db_users = {
    for component in local.database_components :
    component => var.db_iam_auth ? google_service_account.component[component].account_id : var.db_user
  }
  # Which conditional grants and secrets apply (their "when" field, iam.tf and secrets.tf).
  db_auth_mode = var.db_iam_auth ? "iam_auth" : "password_auth"
  # DB_PASS comes from Secret Manager only when passwords are in use.
  db_pass_secrets = var.db_iam_auth ? {} : { DB_PASS = google_secret_manager_secret.secret["db-pass"].secret_id }

  # The shared Optuna study needs a database this module creates and a password login (the
  # trainer builds its URL from DB_USER and DB_PASS); otherwise the trainer runs one task
  # with an in-memory study.
  optuna_enabled     = var.create_sql_instance && !var.db_iam_auth
  trainer_task_count = coalesce(var.trainer_task_count, local.optuna_enabled ? 4 : 1)

  # The report email needs the SMTP password, which only a person can provide.
  email_enabled = var.smtp_password_secret != "" && length(var.report_recipients) > 0
  smtp_secrets  = local.email_enabled ? { SMTP_PASSWORD = var.smtp_password_secret } : {}

  # Every component gets common_env merged with its own map below.
  common_env = {
    CLOUD_SQL_INSTANCE = local.cloud_sql_instance
    DB_NAME            = var.db_name
    DB_IAM_AUTH        = var.db_iam_auth ? "1" : "0"
    DB_IP_TYPE         = var.sql_private_ip ? "PRIVATE" : "PUBLIC"
    GCP_PROJECT        = var.project_id
    LOG_LEVEL          = var.log_level
  }

  # The health check's own settings (both health functions).
  health_check_env = {
    DB_USER              = local.db_users["health"]
    ARTIFACT_URI         = "gs://${google_storage_bucket.artifacts.name}/${var.artifact_prefix}"
    METRICS_SINK         = "cloud-monitoring"
    RETRAIN_TOPIC        = google_pubsub_topic.retrain.id
    RMSE_THRESHOLD       = tostring(var.rmse_threshold)
    WINDOW_DAYS          = tostring(var.window_days)
    FDR_ALPHA            = tostring(var.fdr_alpha)
    MIN_SAMPLES          = tostring(var.min_samples)
    STALE_DAYS           = tostring(var.stale_days)
    DATA_DRIFT_UNHEALTHY = var.data_drift_unhealthy ? "1" : "0"
    MIN_DRIFT_EFFECT     = tostring(var.min_drift_effect)
  }

  # Issue 24, both health functions: where this installation's checks run
  # (forecastguard.health.engine). An empty value is unset: without scale_enabled there is
  # no DATAFLOW_TEMPLATE and every check is in-process. BIGQUERY_URL only for a BigQuery
  # installation (then always Dataflow); a Cloud SQL one hands over above
  # HEALTH_MAX_INPROCESS_PRODUCTS products. health_pubsub launches the job; health_http
  # then answers with the newest stored check (it neither reads BigQuery nor launches).
  health_engine_env = {
    DATAFLOW_TEMPLATE             = var.scale_enabled ? local.dataflow_template_spec : ""
    HEALTH_MAX_INPROCESS_PRODUCTS = var.scale_enabled ? tostring(var.health_max_inprocess_products) : ""
    BIGQUERY_URL                  = local.bigquery_installation ? local.bigquery_url : ""
  }

  # Issue 24, health_pubsub only: the Flex Template launch (forecastguard.health.dataflow).
  # DB_PASS_SECRET: the secret's name the workers read the password from (never the
  # password).
  health_scale_env = {
    DATAFLOW_REGION          = var.scale_enabled ? var.region : ""
    DATAFLOW_SERVICE_ACCOUNT = var.scale_enabled ? one(google_service_account.dataflow[*].email) : ""
    DATAFLOW_TEMP_LOCATION   = var.scale_enabled ? local.dataflow_temp_location : ""
    DB_PASS_SECRET           = var.scale_enabled && !var.db_iam_auth ? google_secret_manager_secret.secret["db-pass"].secret_id : ""
  }

  # The HTTPS endpoint's authentication (health_http only; health_pubsub is reached by
  # its push subscription, which Cloud Run authenticates).
  health_http_env = {
    HEALTH_AUDIENCE        = local.health_url
    HEALTH_ALLOWED_CALLERS = join(",", var.health_callers)
    ALLOW_UNAUTHENTICATED  = "0"
  }

  train_trigger_env = {
    DB_USER     = local.db_users["train-trigger"]
    TRAINER_JOB = google_cloud_run_v2_job.trainer.id
    # A run blocks new ones for as long as it can live: every retry of its task included.
    TRAINER_TIMEOUT_S = tostring(var.trainer_timeout_s * (var.trainer_max_retries + 1))
  }

  trainer_env = {
    DB_USER         = local.db_users["trainer"]
    ARTIFACT_URI    = "gs://${google_storage_bucket.artifacts.name}/${var.artifact_prefix}"
    HOLIDAY_COUNTRY = var.holiday_country
    # The shared study's database; its URL is built from DB_PASS (one credential).
    OPTUNA_DATABASE = local.optuna_enabled ? var.optuna_db_name : ""
    # No SMTP_HOST without the password: the trainer then skips the email and says so.
    SMTP_HOST         = local.email_enabled ? var.smtp_host : ""
    SMTP_PORT         = tostring(var.smtp_port)
    SMTP_USER         = var.smtp_user
    SMTP_STARTTLS     = var.smtp_starttls ? "1" : "0"
    REPORT_FROM       = var.report_from
    REPORT_RECIPIENTS = join(",", var.report_recipients)
    # The trainer marks its request failed only on the last attempt, so a retry that
    # succeeds can still mark it finished.
    TRAINER_MAX_RETRIES = tostring(var.trainer_max_retries)
    # When a run ends, the trainer starts the next queued retrain request itself (it may
    # run its own job with overrides, iam.tf), so the queue drains without a new message.
    TRAINER_JOB       = local.trainer_job_id
    TRAINER_TIMEOUT_S = tostring(var.trainer_timeout_s * (var.trainer_max_retries + 1))
    # Issue 24: a BigQuery installation's trainer also writes its forecasts to the data
    # plane (forecastguard.bigquery.upsert_predictions); empty: SQL only.
    BIGQUERY_URL = local.bigquery_installation ? local.bigquery_url : ""
    # Issue 26: products per partition (the job's task count follows the catalogue).
    TRAIN_PARTITION_SIZE = tostring(var.trainer_partition_size)
  }

  migrate_env = {
    DB_USER = local.db_users["migrate"]
  }

  # Metric types the health function writes (forecastguard's Cloud Monitoring sink).
  metric_prefix = "custom.googleapis.com/forecastguard"
}

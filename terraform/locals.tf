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

  # The Google ID tokens the HTTPS endpoint accepts carry this audience: the function's URL.
  health_url = "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.function_names.health_http}"

  cloud_sql_instance = var.create_sql_instance ? google_sql_database_instance.main[0].connection_name : var.existing_sql_instance

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

  # Every component gets common_env merged with its own map below.
  common_env = {
    CLOUD_SQL_INSTANCE = local.cloud_sql_instance
    DB_NAME            = var.db_name
    DB_IAM_AUTH        = var.db_iam_auth ? "1" : "0"
    GCP_PROJECT        = var.project_id
    LOG_LEVEL          = var.log_level
  }

  health_env = {
    DB_USER               = local.db_users["health"]
    METRICS_SINK          = "cloud-monitoring"
    RETRAIN_TOPIC         = google_pubsub_topic.retrain.id
    HEALTH_AUDIENCE       = local.health_url
    ALLOW_UNAUTHENTICATED = "0"
    RMSE_THRESHOLD        = tostring(var.rmse_threshold)
    WINDOW_DAYS           = tostring(var.window_days)
    FDR_ALPHA             = tostring(var.fdr_alpha)
    MIN_SAMPLES           = tostring(var.min_samples)
    STALE_DAYS            = tostring(var.stale_days)
    DATA_DRIFT_UNHEALTHY  = var.data_drift_unhealthy ? "1" : "0"
  }

  train_trigger_env = {
    DB_USER           = local.db_users["train-trigger"]
    TRAINER_JOB       = google_cloud_run_v2_job.trainer.id
    # A run blocks new ones for as long as it can live: every retry of its task included.
    TRAINER_TIMEOUT_S = tostring(var.trainer_timeout_s * (var.trainer_max_retries + 1))
  }

  trainer_env = {
    DB_USER           = local.db_users["trainer"]
    ARTIFACT_URI      = "gs://${google_storage_bucket.artifacts.name}/${var.artifact_prefix}"
    HOLIDAY_COUNTRY   = var.holiday_country
    SMTP_HOST         = var.smtp_host
    SMTP_PORT         = tostring(var.smtp_port)
    SMTP_USER         = var.smtp_user
    SMTP_STARTTLS     = var.smtp_starttls ? "1" : "0"
    REPORT_FROM       = var.report_from
    REPORT_RECIPIENTS = join(",", var.report_recipients)
    # The trainer marks its request failed only on the last attempt, so a retry that
    # succeeds can still mark it finished.
    TRAINER_MAX_RETRIES = tostring(var.trainer_max_retries)
  }

  # Metric types the health function writes (forecastguard's Cloud Monitoring sink).
  metric_prefix = "custom.googleapis.com/forecastguard"
}

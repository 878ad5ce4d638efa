# Least privilege: project-level roles only where Google offers no narrower resource, and
# the Cloud SQL ones conditioned on the one instance (IAM Conditions on its resource name,
# as in Google's Cloud SQL IAM samples); everything else is granted on the one resource.
#
#   scheduler      publish to the health topic; run the trainer job with overrides (forecast
#                  mode). (It calls Google APIs only, never the HTTPS endpoint: no invoker role.)
#   health         Cloud SQL client, metric writer, publish to the retrain topic, read its token,
#                  write check reports under <artifact_prefix>/health/ only
#   train-trigger  Cloud SQL client, run the trainer job with overrides, read its executions
#   trainer        Cloud SQL client, object user on the artifact bucket, run its own job with
#                  overrides (the next queued request), read the database password (and the
#                  SMTP password)
#   migrate        Cloud SQL client (forecastguard db upgrade)
#   events         invoke the two event-driven functions (the push subscriptions' OIDC identity)
#   fn-build       build the functions' images (Cloud Build, instead of the default account):
#                  logs; read the sources Cloud Functions copies into Google's
#                  gcf-v2-sources-<project number>-<region> bucket (and our sources bucket);
#                  push to the functions' own image repository only (never the trainer's)
# plus, when passwords are in use, each database component reads the db-pass secret; the
# Pub/Sub service agent signs the events account's tokens and handles dead letters; the
# deployer (Cloud Build's account) may act as each component account, not project-wide.

locals {
  pubsub_service_agent = "serviceAccount:${google_project_service_identity.pubsub.email}"

  # component -> role, conditioned on the instance for the Cloud SQL roles ("sql").
  project_roles = {
    "health/cloudsql.client"         = { component = "health", role = "roles/cloudsql.client", scope = "sql" }
    "health/monitoring.metricWriter" = { component = "health", role = "roles/monitoring.metricWriter", scope = "project" }
    "train-trigger/cloudsql.client"  = { component = "train-trigger", role = "roles/cloudsql.client", scope = "sql" }
    "trainer/cloudsql.client"        = { component = "trainer", role = "roles/cloudsql.client", scope = "sql" }
    "migrate/cloudsql.client"        = { component = "migrate", role = "roles/cloudsql.client", scope = "sql" }
  }

  # The condition Google's Cloud SQL guide ("Use IAM Conditions") uses to limit a role to one
  # instance.
  sql_condition = {
    title      = "only-${replace(element(split(":", local.cloud_sql_instance), 2), "/[^a-zA-Z0-9_-]/", "-")}"
    expression = "resource.name == \"${local.sql_instance_resource}\" && resource.service == \"sqladmin.googleapis.com\""
  }

  # "when": always, or only with password database logins (db_auth_mode in locals.tf), or
  # only when the shared Optuna study is set up.
  secret_readers = {
    "health/health-api-token" = { component = "health", secret = "health-api-token", when = "always" }
    "health/db-pass"          = { component = "health", secret = "db-pass", when = "password_auth" }
    "train-trigger/db-pass"   = { component = "train-trigger", secret = "db-pass", when = "password_auth" }
    "trainer/db-pass"         = { component = "trainer", secret = "db-pass", when = "password_auth" }
    "migrate/db-pass"         = { component = "migrate", secret = "db-pass", when = "password_auth" }
  }

  # Gen2 functions copy the source object into Google's own bucket and the build reads it
  # there ("Access to bucket gcf-v2-sources-... denied" otherwise: terraform-provider-google
  # #20571). That bucket appears with the first function, so the grant is a project one
  # conditioned on the bucket's name rather than one on a bucket that may not exist yet.
  gcf_sources_bucket = "projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}"
  gcf_sources_condition = {
    title      = "only-gcf-v2-sources"
    expression = "resource.name == \"${local.gcf_sources_bucket}\" || resource.name.startsWith(\"${local.gcf_sources_bucket}/objects/\")"
  }

  # What the health functions write in the artifact bucket: their check reports.
  health_reports_prefix = "projects/_/buckets/${local.artifact_bucket_name}/objects/${var.artifact_prefix}/health/"
}

resource "google_project_iam_member" "component" {
  for_each = local.project_roles

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.component[each.value.component].member

  dynamic "condition" {
    for_each = each.value.scope == "sql" ? [local.sql_condition] : []
    content {
      title       = condition.value.title
      description = "Cloud SQL access limited to forecastguard's instance"
      expression  = condition.value.expression
    }
  }
}

# IAM database authentication also needs the instance-user role (same condition).
resource "google_project_iam_member" "iam_db_user" {
  for_each = var.db_iam_auth ? local.database_components : toset([])

  project = var.project_id
  role    = "roles/cloudsql.instanceUser"
  member  = google_service_account.component[each.key].member

  condition {
    title       = local.sql_condition.title
    description = "Cloud SQL login limited to forecastguard's instance"
    expression  = local.sql_condition.expression
  }
}

# The function builds' own logs (the build runs as fn-build).
resource "google_project_iam_member" "functions_build" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.component["fn-build"].member
}

resource "google_project_iam_member" "functions_build_reads_gcf_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.component["fn-build"].member

  condition {
    title       = local.gcf_sources_condition.title
    description = "Cloud Functions' source copies only"
    expression  = local.gcf_sources_condition.expression
  }
}

# The built images go to the functions' own repository (build_config.docker_repository):
# fn-build cannot push to the trainer's, whose :latest the trainer build caches from.
resource "google_artifact_registry_repository_iam_member" "functions_build_pushes" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.component["fn-build"].member
}

resource "google_storage_bucket_iam_member" "functions_build_reads_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.component["fn-build"].member
}

resource "google_secret_manager_secret_iam_member" "reader" {
  for_each = { for key, grant in local.secret_readers : key => grant if contains(local.secret_conditions, grant.when) }

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.component[each.value.component].member
}

# The SMTP password is a person's own secret (var.smtp_password_secret): only the trainer reads it.
resource "google_secret_manager_secret_iam_member" "trainer_reads_smtp" {
  count = local.email_enabled ? 1 : 0

  project   = var.project_id
  secret_id = var.smtp_password_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.component["trainer"].member
}

resource "google_pubsub_topic_iam_member" "scheduler_publishes_health" {
  project = var.project_id
  topic   = google_pubsub_topic.health.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.component["scheduler"].member
}

resource "google_pubsub_topic_iam_member" "health_publishes_retrain" {
  project = var.project_id
  topic   = google_pubsub_topic.retrain.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.component["health"].member
}

# train_trigger starts runs; the trainer starts the next queued request when it ends
# (TRAINER_JOB in its environment); the scheduler starts the daily forecast.
resource "google_cloud_run_v2_job_iam_member" "runs_trainer" {
  for_each = toset(["train-trigger", "trainer", "scheduler"])

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.trainer.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = google_service_account.component[each.key].member
}

# The retrain ledger asks Cloud Run whether a recorded execution is still alive
# (run.executions.get on the trainer job's executions), from train_trigger and the trainer.
resource "google_cloud_run_v2_job_iam_member" "reads_trainer_executions" {
  for_each = toset(["train-trigger", "trainer"])

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.trainer.name
  role     = "roles/run.viewer"
  member   = google_service_account.component[each.key].member
}

resource "google_storage_bucket_iam_member" "trainer_writes_artifacts" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectUser"
  member = google_service_account.component["trainer"].member
}

# Each health check writes its HTML report (health/<check_id>/report.html) and overwrites
# the newest copy (health/latest/report.html), hence objectUser rather than objectCreator;
# only under the health/ prefix, so it can neither read nor overwrite champion.json or runs.
resource "google_storage_bucket_iam_member" "health_writes_reports" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectUser"
  member = google_service_account.component["health"].member

  condition {
    title       = "only-health-reports"
    description = "The health check's reports only"
    expression  = "resource.name.startsWith(\"${local.health_reports_prefix}\")"
  }
}

# The push subscriptions deliver to the event-driven functions as the "events" account.
resource "google_cloud_run_service_iam_member" "events_invoke" {
  for_each = {
    health_pubsub = google_cloudfunctions2_function.health_pubsub.service_config[0].service
    train_trigger = google_cloudfunctions2_function.train_trigger.service_config[0].service
  }

  project  = var.project_id
  location = var.region
  service  = each.value
  role     = "roles/run.invoker"
  member   = google_service_account.component["events"].member
}

# Pub/Sub mints the push OIDC tokens of the "events" account ...
resource "google_service_account_iam_member" "pubsub_mints_event_tokens" {
  service_account_id = google_service_account.component["events"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# ... forwards failed messages to the dead-letter topic, and must be a subscriber of each
# push subscription to acknowledge the messages it dead-letters.
resource "google_pubsub_topic_iam_member" "pubsub_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_acks_dead_letters" {
  for_each = google_pubsub_subscription.push

  project      = var.project_id
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The HTTPS health endpoint: invokers are health_callers (with Google ID tokens), or everyone
# with health_http_public (then the function's own check of the bearer token or the caller's
# email is the only gate).
resource "google_cloud_run_service_iam_member" "health_http_invoker" {
  for_each = toset(var.health_http_public ? ["allUsers"] : [for email in var.health_callers : "${endswith(email, ".gserviceaccount.com") ? "serviceAccount" : "user"}:${email}"])

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.health_http.service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}

# The deployer (Cloud Build's account) deploys functions, jobs, schedules and push
# subscriptions that run as these accounts: Service Account User on each of them only.
resource "google_service_account_iam_member" "deployer_acts_as" {
  for_each = var.deployer_service_account == "" ? {} : google_service_account.component

  service_account_id = each.value.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${var.deployer_service_account}"
}

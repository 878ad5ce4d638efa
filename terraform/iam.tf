# Least privilege: project-level roles only where Google offers no narrower resource
# (Cloud SQL connections, metric writes); everything else is granted on the one resource.
#
#   scheduler      publish to the health topic; run the trainer job with overrides (forecast mode)
#   health         Cloud SQL client, metric writer, publish to the retrain topic, read its token
#   train-trigger  Cloud SQL client, run the trainer job with overrides
#   trainer        Cloud SQL client, object user on the artifact bucket, read the SMTP secret
#   events         invoke the two event-driven functions (the Eventarc push identity)
# plus, when passwords are in use, each database component reads the db-pass secret.

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  project_roles = {
    "health/cloudsql.client"         = { component = "health", role = "roles/cloudsql.client" }
    "health/monitoring.metricWriter" = { component = "health", role = "roles/monitoring.metricWriter" }
    "train-trigger/cloudsql.client"  = { component = "train-trigger", role = "roles/cloudsql.client" }
    "trainer/cloudsql.client"        = { component = "trainer", role = "roles/cloudsql.client" }
  }

  # "when": always, or only with password database logins (db_auth_mode in locals.tf).
  secret_readers = {
    "health/health-api-token" = { component = "health", secret = "health-api-token", when = "always" }
    "trainer/smtp-password"   = { component = "trainer", secret = "smtp-password", when = "always" }
    "health/db-pass"          = { component = "health", secret = "db-pass", when = "password_auth" }
    "train-trigger/db-pass"   = { component = "train-trigger", secret = "db-pass", when = "password_auth" }
    "trainer/db-pass"         = { component = "trainer", secret = "db-pass", when = "password_auth" }
  }
}

resource "google_project_iam_member" "component" {
  for_each = local.project_roles

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.component[each.value.component].member
}

# IAM database authentication also needs the instance-user role.
resource "google_project_iam_member" "iam_db_user" {
  for_each = var.db_iam_auth ? local.database_components : toset([])

  project = var.project_id
  role    = "roles/cloudsql.instanceUser"
  member  = google_service_account.component[each.key].member
}

resource "google_secret_manager_secret_iam_member" "reader" {
  for_each = { for key, grant in local.secret_readers : key => grant if contains(["always", local.db_auth_mode], grant.when) }

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.component[each.value.component].member
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

resource "google_cloud_run_v2_job_iam_member" "runs_trainer" {
  for_each = toset(["train-trigger", "scheduler"])

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.trainer.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = google_service_account.component[each.key].member
}

resource "google_storage_bucket_iam_member" "trainer_writes_artifacts" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectUser"
  member = google_service_account.component["trainer"].member
}

# Eventarc pushes Pub/Sub messages to the event-driven functions as the "events" account.
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

# ... and forwards failed messages to the dead-letter topic. (Its subscriber role on the
# Eventarc-managed subscriptions is granted by scripts/attach_dead_letters.sh.)
resource "google_pubsub_topic_iam_member" "pubsub_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

# The HTTPS health endpoint: open at the IAM layer (the function checks the bearer token
# or Google ID token itself), or closed to all but the listed invokers.
resource "google_cloud_run_service_iam_member" "health_http_invoker" {
  #checkov:skip=CKV_GCP_102:With health_http_public the endpoint is open at the IAM layer so the HEALTH_API_TOKEN bearer can reach it; the function rejects requests without a valid token. Set health_http_public = false to require Google ID tokens at the IAM layer.
  for_each = toset(var.health_http_public ? ["allUsers"] : var.health_http_invokers)

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.health_http.service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}

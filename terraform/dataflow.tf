# The health check at scale (issue 24): the Apache Beam pipeline of jobs/health_beam as a
# Dataflow Flex Template. Cloud Build builds its image (jobs/health_beam/Dockerfile) and
# writes the template spec to gs://<artifacts>/<prefix>/dataflow/templates/health_beam.json;
# Cloud Scheduler launches it daily (flexTemplates:launch) as the scheduler account, and the
# job runs as its own worker account with least privilege. Alerts: a failed job, or one
# still running past dataflow_max_minutes. Everything here exists only with scale_enabled.

locals {
  dataflow_prefix        = "${var.artifact_prefix}/dataflow/"
  dataflow_prefix_object = "projects/_/buckets/${local.artifact_bucket_name}/objects/${local.dataflow_prefix}"
  dataflow_template_spec = "gs://${local.artifact_bucket_name}/${local.dataflow_prefix}templates/health_beam.json"
  scale                  = var.scale_enabled ? toset(["scale"]) : toset([])
}

# The APIs of the scale path (bigquery, its Storage Read API, Dataflow), only when it is on;
# scripts/bootstrap.sh does not enable them (a small installation never calls them).
resource "google_project_service" "scale" {
  for_each = var.scale_enabled ? toset([
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",
    "dataflow.googleapis.com",
  ]) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# The workers' own account (not the Compute Engine default account).
resource "google_service_account" "dataflow" {
  count = var.scale_enabled ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-dataflow"
  display_name = "forecastguard health check on Dataflow (workers)"

  depends_on = [time_sleep.apis]
}

# Project-wide only where no narrower resource exists: running as a Dataflow worker, BigQuery
# jobs (queries, load jobs) and Storage Read API sessions, and the metrics.
resource "google_project_iam_member" "dataflow" {
  for_each = var.scale_enabled ? toset([
    "roles/dataflow.worker",
    "roles/bigquery.jobUser",
    "roles/bigquery.readSessionUser",
    "roles/monitoring.metricWriter",
  ]) : toset([])

  project = var.project_id
  role    = each.value
  member  = google_service_account.dataflow[0].member
}

# Cloud SQL (the summary of each check), on forecastguard's instance only.
resource "google_project_iam_member" "dataflow_sql" {
  for_each = var.scale_enabled ? toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"]) : toset([])

  project = var.project_id
  role    = each.value
  member  = google_service_account.dataflow[0].member

  condition {
    title       = local.sql_condition.title
    description = "Cloud SQL access limited to forecastguard's instance"
    expression  = local.sql_condition.expression
  }
}

# Read and write the tables of forecastguard's dataset only.
resource "google_bigquery_dataset_iam_member" "dataflow_edits_dataset" {
  count = var.scale_enabled ? 1 : 0

  project    = var.project_id
  dataset_id = google_bigquery_dataset.scale[0].dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.dataflow[0].member
}

# Temp and staging files of the job, under <prefix>/dataflow/ only.
resource "google_storage_bucket_iam_member" "dataflow_temp" {
  count = var.scale_enabled ? 1 : 0

  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectUser"
  member = google_service_account.dataflow[0].member

  condition {
    title       = "only-dataflow-temp"
    description = "The Dataflow job's temp and staging files only"
    expression  = "resource.name.startsWith(\"${local.dataflow_prefix_object}\")"
  }
}

# The check's report page, under <prefix>/health/ only (as the health function).
resource "google_storage_bucket_iam_member" "dataflow_reports" {
  count = var.scale_enabled ? 1 : 0

  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectUser"
  member = google_service_account.dataflow[0].member

  condition {
    title       = "only-health-reports"
    description = "The health check's reports only"
    expression  = "resource.name.startsWith(\"${local.health_reports_prefix}\")"
  }
}

resource "google_pubsub_topic_iam_member" "dataflow_publishes_retrain" {
  count = var.scale_enabled ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.retrain.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.dataflow[0].member
}

resource "google_secret_manager_secret_iam_member" "dataflow_reads_db_pass" {
  count = var.scale_enabled ? 1 : 0

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret["db-pass"].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.dataflow[0].member
}

# The workers pull the template's image.
resource "google_artifact_registry_repository_iam_member" "dataflow_pulls_image" {
  count = var.scale_enabled ? 1 : 0

  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.dataflow[0].member
}

# The scheduler launches the template: it creates Dataflow jobs, acts as the worker account
# (on that account only) and reads the template spec under <prefix>/dataflow/.
resource "google_project_iam_member" "scheduler_launches_dataflow" {
  count = var.scale_enabled ? 1 : 0

  project = var.project_id
  role    = "roles/dataflow.developer"
  member  = google_service_account.component["scheduler"].member
}

resource "google_service_account_iam_member" "scheduler_acts_as_dataflow" {
  count = var.scale_enabled ? 1 : 0

  service_account_id = google_service_account.dataflow[0].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.component["scheduler"].member
}

resource "google_storage_bucket_iam_member" "scheduler_reads_template" {
  count = var.scale_enabled ? 1 : 0

  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.component["scheduler"].member

  condition {
    title       = "only-dataflow-temp"
    description = "The Dataflow template spec and staging files only"
    expression  = "resource.name.startsWith(\"${local.dataflow_prefix_object}\")"
  }
}

# Daily: launch the Flex Template (the check of yesterday's window, the engine choice of
# a BigQuery installation: always Dataflow).
resource "google_cloud_scheduler_job" "health_check_dataflow" {
  count = var.scale_enabled ? 1 : 0

  project     = var.project_id
  region      = var.region
  name        = "${var.name_prefix}-daily-health-check-dataflow"
  description = "Daily forecastguard health check at scale (Dataflow Flex Template)"
  schedule    = var.health_check_schedule
  time_zone   = var.schedule_time_zone

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://dataflow.googleapis.com/v1b3/projects/${var.project_id}/locations/${var.region}/flexTemplates:launch"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode(jsonencode({
      launchParameter = {
        jobName              = "${var.name_prefix}-health-check"
        containerSpecGcsPath = local.dataflow_template_spec
        # What the pipeline needs besides the data (forecastguard.health.dataflow.FORWARDED,
        # declared in jobs/health_beam/metadata.json): the control database's settings —
        # never the password: the workers read it from Secret Manager by its secret's
        # name — the metrics sink, the report location and the retrain topic.
        parameters = merge({
          source             = local.bigquery_url
          batch_size         = tostring(var.dataflow_batch_size)
          window_days        = tostring(var.window_days)
          gcp_project        = var.project_id
          cloud_sql_instance = local.cloud_sql_instance
          db_user            = var.db_iam_auth ? google_service_account.dataflow[0].account_id : var.db_user
          db_name            = var.db_name
          db_ip_type         = var.sql_private_ip ? "PRIVATE" : "PUBLIC"
          db_iam_auth        = var.db_iam_auth ? "true" : "false"
          metrics_sink       = "cloud-monitoring"
          artifact_uri       = "gs://${google_storage_bucket.artifacts.name}/${var.artifact_prefix}"
          retrain_topic      = google_pubsub_topic.retrain.id
        }, var.db_iam_auth ? {} : { db_pass_secret = google_secret_manager_secret.secret["db-pass"].secret_id })
        environment = {
          serviceAccountEmail   = google_service_account.dataflow[0].email
          tempLocation          = "gs://${local.artifact_bucket_name}/${local.dataflow_prefix}temp"
          stagingLocation       = "gs://${local.artifact_bucket_name}/${local.dataflow_prefix}staging"
          maxWorkers            = var.dataflow_max_workers
          machineType           = var.dataflow_machine_type
          ipConfiguration       = "WORKER_IP_PRIVATE"
          enableStreamingEngine = false
          additionalUserLabels  = var.labels
        }
      }
    }))

    oauth_token {
      service_account_email = google_service_account.component["scheduler"].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [
    google_project_iam_member.scheduler_launches_dataflow,
    google_service_account_iam_member.scheduler_acts_as_dataflow,
    time_sleep.iam_propagation,
  ]
}

# A failed job, or one still running past dataflow_max_minutes (a late check).
resource "google_monitoring_alert_policy" "dataflow" {
  for_each = local.scale

  project      = var.project_id
  display_name = "forecastguard: health check on Dataflow failed or late"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "job failed"
    condition_threshold {
      filter          = "metric.type=\"dataflow.googleapis.com/job/is_failed\" AND resource.type=\"dataflow_job\" AND resource.label.job_name=starts_with(\"${var.name_prefix}-health-check\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  conditions {
    display_name = "job running past ${var.dataflow_max_minutes} minutes"
    condition_threshold {
      filter          = "metric.type=\"dataflow.googleapis.com/job/elapsed_time\" AND resource.type=\"dataflow_job\" AND resource.label.job_name=starts_with(\"${var.name_prefix}-health-check\")"
      comparison      = "COMPARISON_GT"
      threshold_value = var.dataflow_max_minutes * 60
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "The daily forecastguard health check on Dataflow failed or runs late: see the job in the Dataflow console (docs/scale.md)."
    mime_type = "text/markdown"
  }

  depends_on = [time_sleep.apis]
}

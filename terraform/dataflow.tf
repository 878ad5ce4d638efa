# The health check at scale (issue 24): the Apache Beam pipeline of jobs/health_beam as a
# Dataflow Flex Template. The plan build (cloudbuild.yaml) builds and pushes its image and
# passes its digest as health_beam_image; Terraform writes the template spec naming that
# digest (the reviewed plan shows it) to gs://<artifacts>/<prefix>/dataflow/templates/
# health_beam.json. ONE scheduled path per installation: the daily Cloud Scheduler job
# publishes to the health topic (scheduler.tf) and the health_pubsub function picks the
# engine (forecastguard.health.engine.choose_engine) — Dataflow always for a BigQuery
# installation (scale_data_plane = "bigquery"), above health_max_inprocess_products products
# for a Cloud SQL one — and launches the template as the health account, the job running
# as its own worker account with least privilege. Terraform itself launches nothing.
# Alerts: a failed job, or one still running past dataflow_max_minutes. Everything here
# exists only with scale_enabled.

locals {
  dataflow_prefix        = "${var.artifact_prefix}/dataflow/"
  dataflow_prefix_object = "projects/_/buckets/${local.artifact_bucket_name}/objects/${local.dataflow_prefix}"
  # The launcher (the health account) reads only the template spec.
  dataflow_templates_object = "${local.dataflow_prefix_object}templates/"
  dataflow_template_object  = "${local.dataflow_prefix}templates/health_beam.json"
  dataflow_template_spec    = "gs://${local.artifact_bucket_name}/${local.dataflow_template_object}"
  dataflow_temp_location    = "gs://${local.artifact_bucket_name}/${local.dataflow_prefix}temp"
  dataflow_staging_location = "gs://${local.artifact_bucket_name}/${local.dataflow_prefix}staging"
  scale                     = var.scale_enabled ? toset(["scale"]) : toset([])
  # A BigQuery installation: the check reads BigQuery (always on Dataflow) and the trainer
  # writes its forecasts there; a Cloud SQL one hands over to Dataflow above a size only.
  bigquery_installation = var.scale_enabled && var.scale_data_plane == "bigquery"
  # The Dataflow jobs the health function launches are named fg-health-<as_of>-<hash>
  # (forecastguard.health.dataflow.job_name).
  dataflow_job_prefix = "fg-health-"
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

# Temp and staging files of the job, under <prefix>/dataflow/temp and /staging only: not
# templates/, so a worker cannot replace the spec the health function launches.
resource "google_storage_bucket_iam_member" "dataflow_temp" {
  count = var.scale_enabled ? 1 : 0

  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectUser"
  member = google_service_account.dataflow[0].member

  condition {
    title       = "only-dataflow-temp"
    description = "The Dataflow job's temp and staging files only"
    expression  = "resource.name.startsWith(\"${local.dataflow_prefix_object}temp\") || resource.name.startsWith(\"${local.dataflow_prefix_object}staging\")"
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

# The health account launches the template (health_pubsub's hand-over): it creates
# Dataflow jobs (roles/dataflow.developer: Google's role for launching; jobs have no
# resource narrower than the project to grant on), acts as the worker account (on that
# account only: the launcher VM and the workers run as it, so they, not the health
# account, write the temp and staging files) and reads the template spec only.
resource "google_project_iam_member" "health_launches_dataflow" {
  count = var.scale_enabled ? 1 : 0

  project = var.project_id
  role    = "roles/dataflow.developer"
  member  = google_service_account.component["health"].member
}

resource "google_service_account_iam_member" "health_acts_as_dataflow" {
  count = var.scale_enabled ? 1 : 0

  service_account_id = google_service_account.dataflow[0].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.component["health"].member
}

resource "google_storage_bucket_iam_member" "health_reads_template" {
  count = var.scale_enabled ? 1 : 0

  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.component["health"].member

  condition {
    title       = "only-dataflow-templates"
    description = "The Dataflow template spec only"
    expression  = "resource.name.startsWith(\"${local.dataflow_templates_object}\")"
  }
}

# The Flex Template spec: the image the plan build pushed, by digest (so the reviewed plan
# names exactly what was built), the parameters of jobs/health_beam/metadata.json (the one
# copy: the plan bundle carries it, cloudbuild.yaml) and the job's defaults. The function's
# launch adds the run's parameters, the worker account and the temp folder.
resource "google_storage_bucket_object" "dataflow_template" {
  count = var.scale_enabled ? 1 : 0

  bucket       = google_storage_bucket.artifacts.name
  name         = local.dataflow_template_object
  content_type = "application/json"
  content = jsonencode({
    image    = var.health_beam_image
    sdkInfo  = { language = "PYTHON" }
    metadata = jsondecode(file("${path.module}/../jobs/health_beam/metadata.json"))
    defaultEnvironment = {
      serviceAccountEmail   = google_service_account.dataflow[0].email
      tempLocation          = local.dataflow_temp_location
      stagingLocation       = local.dataflow_staging_location
      sdkContainerImage     = var.health_beam_image
      maxWorkers            = var.dataflow_max_workers
      machineType           = var.dataflow_machine_type
      ipConfiguration       = "WORKER_IP_PRIVATE"
      enableStreamingEngine = false
      additionalExperiments = ["use_runner_v2"]
      additionalUserLabels  = merge({ app = "forecastguard" }, var.labels)
    }
  })

  lifecycle {
    precondition {
      condition     = var.health_beam_image != ""
      error_message = "scale_enabled needs health_beam_image (the Flex Template image by digest): the plan build sets it when terraform.tfvars has scale_enabled = true (cloudbuild.yaml)."
    }
  }
}

# With IAM database login the workers log in as their own account (its MySQL user is the
# email without the domain, what the function's launch passes as db_user). MySQL gives it no
# privileges: an admin grants them once, as for the other accounts (docs/deploy.md).
resource "google_sql_user" "dataflow" {
  count = var.scale_enabled && var.create_sql_instance && var.db_iam_auth ? 1 : 0

  project  = var.project_id
  instance = google_sql_database_instance.main[0].name
  name     = google_service_account.dataflow[0].email
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# A BigQuery installation's trainer writes its forecasts to the dataset (BIGQUERY_URL):
# data editor on that dataset only, and BigQuery jobs (a load and a MERGE) on the project.
resource "google_bigquery_dataset_iam_member" "trainer_edits_dataset" {
  count = local.bigquery_installation ? 1 : 0

  project    = var.project_id
  dataset_id = google_bigquery_dataset.scale[0].dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.component["trainer"].member
}

resource "google_project_iam_member" "trainer_runs_bigquery_jobs" {
  count = local.bigquery_installation ? 1 : 0

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.component["trainer"].member
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
      filter          = "metric.type=\"dataflow.googleapis.com/job/is_failed\" AND resource.type=\"dataflow_job\" AND resource.label.job_name=starts_with(\"${local.dataflow_job_prefix}\")"
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
      filter          = "metric.type=\"dataflow.googleapis.com/job/elapsed_time\" AND resource.type=\"dataflow_job\" AND resource.label.job_name=starts_with(\"${local.dataflow_job_prefix}\")"
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

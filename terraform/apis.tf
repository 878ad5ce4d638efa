# The Google APIs forecastguard uses, and the Pub/Sub service agent. Disabling APIs on
# destroy is left to people. scripts/bootstrap.sh enables every API of this list before the
# first plan (tests/infra checks the two lists agree), so on an empty project they are on
# long before the first apply; Terraform keeps them on, and everything that calls one of
# them waits for time_sleep.apis, in case this apply is the one that enables it (a freshly
# enabled API answers 403 "API not enabled" for a while).

locals {
  apis = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ])
  # Only with sql_private_ip (enabling Compute Engine would otherwise create nothing we use).
  private_ip_apis = toset([
    "compute.googleapis.com",
    "servicenetworking.googleapis.com",
    "vpcaccess.googleapis.com",
  ])
  enabled_apis = var.sql_private_ip ? setunion(local.apis, local.private_ip_apis) : local.apis
}

resource "google_project_service" "apis" {
  for_each = local.enabled_apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Enabling an API returns before every backend accepts calls; wait once after (re-)enabling,
# also after the scale path's APIs (google_project_service.scale, dataflow.tf).
resource "time_sleep" "apis" {
  create_duration = var.api_enable_wait
  triggers = {
    apis  = join(",", sort(tolist(local.enabled_apis)))
    scale = tostring(var.scale_enabled)
  }

  depends_on = [google_project_service.apis, google_project_service.scale]
}

data "google_project" "this" {
  project_id = var.project_id
}

# The Pub/Sub service agent signs the push subscriptions' OIDC tokens and forwards dead
# letters. Google creates it lazily, so on a fresh project it may not exist yet when we
# grant it roles: create it explicitly (Service Usage generateServiceIdentity).
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [time_sleep.apis]
}

# IAM changes propagate in about two minutes, sometimes up to seven (Google's IAM
# documentation, "Access change propagation"). The functions and jobs are deployed, and the
# subscriptions push, only after this wait, so a first apply does not fail on a grant that
# exists but is not yet visible. The scale path's grants (dataflow.tf) are waited for too,
# and turning scale_enabled on later waits again (the trigger), so the health function
# never launches a Dataflow job, nor the trainer writes to BigQuery, before they are seen.
resource "time_sleep" "iam_propagation" {
  create_duration = var.iam_propagation_wait
  triggers = {
    scale = tostring(var.scale_enabled)
  }

  depends_on = [
    google_project_iam_member.component,
    google_project_iam_member.functions_build,
    google_project_iam_member.functions_build_reads_gcf_sources,
    google_artifact_registry_repository_iam_member.functions_build_pushes,
    google_secret_manager_secret_iam_member.reader,
    google_service_account_iam_member.deployer_acts_as,
    google_service_account_iam_member.pubsub_mints_event_tokens,
    google_storage_bucket_iam_member.functions_build_reads_sources,
    # issue 24 (scale_enabled)
    google_project_iam_member.dataflow,
    google_project_iam_member.dataflow_sql,
    google_bigquery_dataset_iam_member.dataflow_edits_dataset,
    google_storage_bucket_iam_member.dataflow_temp,
    google_storage_bucket_iam_member.dataflow_reports,
    google_pubsub_topic_iam_member.dataflow_publishes_retrain,
    google_secret_manager_secret_iam_member.dataflow_reads_db_pass,
    google_artifact_registry_repository_iam_member.dataflow_pulls_image,
    google_project_iam_member.health_launches_dataflow,
    google_service_account_iam_member.health_acts_as_dataflow,
    google_storage_bucket_iam_member.health_reads_template,
    google_bigquery_dataset_iam_member.trainer_edits_dataset,
    google_project_iam_member.trainer_runs_bigquery_jobs,
  ]
}

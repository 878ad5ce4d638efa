output "health_url" {
  description = "HTTPS health endpoint (also HEALTH_AUDIENCE): GET/POST it with an allowed caller's Google ID token."
  value       = local.health_url
}

output "health_audience" {
  description = "Audience the health function expects in Google ID tokens."
  value       = local.health_url
}

output "topics" {
  description = "Pub/Sub topic ids: health requests, retrain requests, dead letters."
  value = {
    health      = google_pubsub_topic.health.id
    retrain     = google_pubsub_topic.retrain.id
    dead_letter = google_pubsub_topic.dead_letter.id
  }
}

output "dead_letter_subscription" {
  description = "Pull subscription that keeps dead-lettered messages."
  value       = google_pubsub_subscription.dead_letter.id
}

output "push_subscriptions" {
  description = "Pub/Sub push subscriptions delivering to the event-driven functions (with retry policy and dead-letter topic)."
  value       = { for key, sub in google_pubsub_subscription.push : key => sub.id }
}

output "migrate_job" {
  description = "Cloud Run job running forecastguard db upgrade (an execution runs inside every pipeline apply: migration_token)."
  value       = google_cloud_run_v2_job.migrate.name
}

output "trainer_job" {
  description = "Cloud Run job of the trainer (TRAINER_JOB)."
  value       = google_cloud_run_v2_job.trainer.id
}

output "trainer_job_name" {
  description = "Name of the trainer's Cloud Run job (gcloud run jobs execute NAME; cloudbuild-apply.yaml's first training)."
  value       = google_cloud_run_v2_job.trainer.name
}

output "artifact_uri" {
  description = "ARTIFACT_URI of the trainer: runs, reports and the champion pointer."
  value       = local.trainer_env["ARTIFACT_URI"]
}

output "artifact_registry" {
  description = "Docker repository path for the trainer image."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "cloud_sql_instance" {
  description = "Connection name of the Cloud SQL instance (CLOUD_SQL_INSTANCE)."
  value       = local.cloud_sql_instance
}

output "secrets" {
  description = "Secret Manager secrets this module manages (their versions are generated; values never in the state)."
  value       = { for key, secret in google_secret_manager_secret.secret : key => secret.secret_id }
}

output "service_accounts" {
  description = "Service account email of each component."
  value       = { for key, sa in google_service_account.component : key => sa.email }
}

output "dashboard" {
  description = "Cloud Monitoring dashboard of the model's health."
  value       = "https://console.cloud.google.com/monitoring/dashboards/builder/${element(split("/", google_monitoring_dashboard.health.id), 3)}?project=${var.project_id}"
}

output "max_delivery_attempts" {
  description = "Deliveries before a push subscription moves a message to the dead-letter topic."
  value       = var.max_delivery_attempts
}

output "bigquery_url" {
  description = "The scale path's data plane for `forecastguard health --engine beam --database-url` (null unless scale_enabled)."
  value       = var.scale_enabled ? local.bigquery_url : null
}

output "dataflow_template_spec" {
  description = "The health check's Flex Template spec Terraform writes (image by digest, metadata.json, defaults; null unless scale_enabled)."
  value       = var.scale_enabled ? local.dataflow_template_spec : null
}

output "dataflow_service_account" {
  description = "The Dataflow workers' service account (null unless scale_enabled)."
  value       = var.scale_enabled ? google_service_account.dataflow[0].email : null
}

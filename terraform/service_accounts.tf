# One service account per component; each gets only the roles in iam.tf.

locals {
  service_accounts = {
    health          = "forecastguard health functions (HTTP and Pub/Sub)"
    "train-trigger" = "forecastguard train_trigger function"
    trainer         = "forecastguard trainer Cloud Run job"
    scheduler       = "forecastguard Cloud Scheduler jobs"
    events          = "forecastguard Eventarc triggers (Pub/Sub push to the functions)"
  }
  # The components that log in to Cloud SQL.
  database_components = toset(["health", "train-trigger", "trainer"])
}

resource "google_service_account" "component" {
  for_each = local.service_accounts

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = each.value

  depends_on = [google_project_service.apis]
}

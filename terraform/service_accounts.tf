# One service account per component; each gets only the roles in iam.tf.

locals {
  service_accounts = {
    health          = "forecastguard health functions (HTTP and Pub/Sub)"
    "train-trigger" = "forecastguard train_trigger function"
    trainer         = "forecastguard trainer Cloud Run job"
    migrate         = "forecastguard schema migrations (Cloud Run job, forecastguard db upgrade)"
    scheduler       = "forecastguard Cloud Scheduler jobs"
    events          = "forecastguard Pub/Sub push subscriptions (OIDC identity towards the functions)"
    "fn-build"      = "forecastguard Cloud Functions builds (instead of the default build account)"
  }
  # The components that log in to Cloud SQL.
  database_components = toset(["health", "train-trigger", "trainer", "migrate"])

  # The longest account id this module derives; variables.tf validates name_prefix against
  # it (service account ids are 6-30 characters).
  longest_account_suffix = "train-trigger"
}

resource "google_service_account" "component" {
  for_each = local.service_accounts

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = each.value

  lifecycle {
    precondition {
      condition     = length("${var.name_prefix}-${each.key}") <= 30
      error_message = "Service account id ${var.name_prefix}-${each.key} is longer than 30 characters: shorten name_prefix."
    }
  }

  depends_on = [time_sleep.apis]
}

# Secret Manager secrets WITHOUT versions: no secret value ever enters Terraform state.
# Add the values out of band (docs/deploy.md, "Adding secret versions"):
#   printf %s "$VALUE" | gcloud secrets versions add <name_prefix>-<secret> --data-file=-
# Every consumer reads version "latest".

locals {
  secrets = {
    "health-api-token" = { purpose = "HEALTH_API_TOKEN: bearer token of the HTTPS /model/health endpoint", when = "always" }
    "smtp-password"    = { purpose = "SMTP_PASSWORD: password (Gmail app password) of the report email account", when = "always" }
    "db-pass"          = { purpose = "DB_PASS: password of the Cloud SQL user", when = "password_auth" }
  }
}

resource "google_secret_manager_secret" "secret" {
  for_each = { for key, secret in local.secrets : key => secret if contains(["always", local.db_auth_mode], secret.when) }

  project   = var.project_id
  secret_id = "${var.name_prefix}-${each.key}"

  annotations = {
    purpose = each.value.purpose
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

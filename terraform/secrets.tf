# Secret Manager secrets WITHOUT versions: no secret value ever enters Terraform state.
# Add the values out of band (README, "Adding secret versions"):
#   printf %s "$VALUE" | gcloud secrets versions add <name_prefix>-<secret> --data-file=-
# Every consumer reads version "latest".

locals {
  secrets = merge(
    {
      "health-api-token" = "HEALTH_API_TOKEN: bearer token of the HTTPS /model/health endpoint"
      "smtp-password"    = "SMTP_PASSWORD: password (Gmail app password) of the report email account"
    },
    var.db_iam_auth ? {} : {
      "db-pass" = "DB_PASS: password of the Cloud SQL user"
    },
  )
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = "${var.name_prefix}-${each.key}"

  annotations = {
    purpose = each.value
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# Secret Manager secrets. What can be generated is generated at the first apply, so every
# secret a component reads has a version before the component is deployed:
#
#   health-api-token  HEALTH_API_TOKEN of /model/health (bearer token)
#   db-pass           DB_PASS, also set on the Cloud SQL user   (password login only)
#   optuna-storage    OPTUNA_STORAGE, the shared study's URL    (password login, created instance)
#
# The values come from an ephemeral random_password and are written through write-only
# arguments (secret_data_wo, password_wo): they are in neither the plan nor the state.
# Raise var.secret_generation to rotate them all at once.
#
# The SMTP password is the one secret only a person can provide: bring it as your own
# secret (var.smtp_password_secret); without it the trainer sends no email.

locals {
  secrets = {
    "health-api-token" = { purpose = "HEALTH_API_TOKEN: bearer token of the HTTPS /model/health endpoint", when = "always" }
    "db-pass"          = { purpose = "DB_PASS: password of the Cloud SQL user", when = "password_auth" }
    "optuna-storage"   = { purpose = "OPTUNA_STORAGE: SQLAlchemy URL of the shared Optuna study database", when = "optuna" }
  }
  # Which "when" values hold in this configuration.
  secret_conditions = compact([
    "always",
    local.db_auth_mode,
    local.optuna_enabled ? "optuna" : "",
    local.email_enabled ? "email" : "",
  ])
  enabled_secrets = { for key, secret in local.secrets : key => secret if contains(local.secret_conditions, secret.when) }

  # With password login the password is always generated (so every component can start);
  # this module sets it on the SQL user it creates. With existing_sql_instance, set your
  # user's password to the secret's value (docs/deploy.md, "Bring your own instance").
  generated_db_password = !var.db_iam_auth
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.enabled_secrets

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

# Never stored: opened anew on every plan and apply, used only in write-only arguments, which
# are sent only when their *_wo_version changes (the first apply, or a new secret_generation).
ephemeral "random_password" "api_token" {
  length  = 48
  special = false
}

ephemeral "random_password" "db" {
  length  = 32
  special = false # it goes into URLs (OPTUNA_STORAGE) and command lines unquoted
}

resource "google_secret_manager_secret_version" "health_api_token" {
  secret                 = google_secret_manager_secret.secret["health-api-token"].id
  secret_data_wo         = ephemeral.random_password.api_token.result
  secret_data_wo_version = var.secret_generation
}

resource "google_secret_manager_secret_version" "db_pass" {
  count = local.generated_db_password ? 1 : 0

  secret                 = google_secret_manager_secret.secret["db-pass"].id
  secret_data_wo         = ephemeral.random_password.db.result
  secret_data_wo_version = var.secret_generation
}

# The shared Optuna study: the same user and password, its own database, reached through the
# Cloud SQL socket the trainer job mounts at /cloudsql.
resource "google_secret_manager_secret_version" "optuna_storage" {
  count = local.optuna_enabled ? 1 : 0

  secret                 = google_secret_manager_secret.secret["optuna-storage"].id
  secret_data_wo         = "mysql+pymysql://${var.db_user}:${ephemeral.random_password.db.result}@/${var.optuna_db_name}?unix_socket=/cloudsql/${local.cloud_sql_instance}"
  secret_data_wo_version = var.secret_generation
}

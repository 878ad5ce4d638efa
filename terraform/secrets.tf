# Secret Manager secrets. What can be generated is generated at the first apply, so every
# secret a component reads has a version before the component is deployed:
#
#   health-api-token  HEALTH_API_TOKEN of /model/health (bearer token)
#   db-pass           DB_PASS, also set on the Cloud SQL user   (password login only)
#
# db-pass is the one database credential: the SQL user's password is written from the same
# ephemeral value in the same apply, and the trainer builds the shared Optuna study's URL
# from DB_PASS (OPTUNA_DATABASE names the study's database), so no second copy exists that
# could differ. The migration job, run inside every apply (trainer_job.tf), logs in with
# DB_PASS: a password the SQL user does not have fails the deployment, not the first run.
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

  depends_on = [time_sleep.apis]
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

# Written after the SQL user: when the instance or the user fails (API not ready, an
# organisation policy), no secret version exists yet and the next apply writes both from
# one value. (The rare reverse, a user written and the version not, is caught by the
# migration job's login and mended by raising secret_generation: docs/deploy.md.)
resource "google_secret_manager_secret_version" "db_pass" {
  count = local.generated_db_password ? 1 : 0

  secret                 = google_secret_manager_secret.secret["db-pass"].id
  secret_data_wo         = ephemeral.random_password.db.result
  secret_data_wo_version = var.secret_generation

  depends_on = [google_sql_user.password]
}

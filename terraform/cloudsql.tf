# An optional Cloud SQL MySQL instance with the forecastguard database and its user;
# set create_sql_instance = false and existing_sql_instance to use an instance you have.
#
# The components reach it only through the Cloud SQL connector (IAM-authorised, TLS with
# client certificates); no network is authorised.

resource "google_sql_database_instance" "main" {
  #checkov:skip=CKV_GCP_60:The default keeps a public address with no authorised network, reachable only through the Cloud SQL connector (IAM-authorised, client certificates); sql_private_ip = true removes it (private address on a VPC), as organisations enforcing sql.restrictPublicIp require.
  count = var.create_sql_instance ? 1 : 0

  project             = var.project_id
  name                = var.sql_instance_name
  region              = var.region
  database_version    = var.sql_database_version
  deletion_protection = var.sql_deletion_protection

  settings {
    tier                        = var.sql_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.sql_availability_type
    deletion_protection_enabled = var.sql_deletion_protection
    user_labels                 = merge({ app = "forecastguard" }, var.labels)

    ip_configuration {
      ipv4_enabled    = !var.sql_private_ip
      private_network = var.sql_private_ip ? local.vpc_network_id : null
      ssl_mode        = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    backup_configuration {
      enabled            = true
      binary_log_enabled = true
      start_time         = "02:00"
    }

    database_flags {
      name  = "local_infile"
      value = "off"
    }
    database_flags {
      name  = "skip_show_database"
      value = "on"
    }
    dynamic "database_flags" {
      for_each = var.db_iam_auth ? ["on"] : []
      content {
        name  = "cloudsql_iam_authentication"
        value = database_flags.value
      }
    }

    insights_config {
      query_insights_enabled = true
    }
  }

  depends_on = [time_sleep.apis, google_service_networking_connection.sql]
}

resource "google_sql_database" "forecastguard" {
  count = var.create_sql_instance ? 1 : 0

  project  = var.project_id
  instance = google_sql_database_instance.main[0].name
  name     = var.db_name
  charset  = "utf8mb4"
}

# The shared Optuna study's database (the trainer's tasks tune into one study).
resource "google_sql_database" "optuna" {
  count = local.optuna_enabled ? 1 : 0

  project  = var.project_id
  instance = google_sql_database_instance.main[0].name
  name     = var.optuna_db_name
  charset  = "utf8mb4"
}

# Password authentication: the password is the generated db-pass value, written through
# the write-only password_wo (never in the state); a new secret_generation rotates it
# together with the secret.
resource "google_sql_user" "password" {
  count = var.create_sql_instance && !var.db_iam_auth ? 1 : 0

  project             = var.project_id
  instance            = google_sql_database_instance.main[0].name
  name                = var.db_user
  host                = "%"
  password_wo         = ephemeral.random_password.db.result
  password_wo_version = var.secret_generation
}

# IAM database authentication: one user per component's service account. MySQL gives IAM
# users no privileges: an admin grants them once (docs/deploy.md, "IAM database login").
resource "google_sql_user" "iam" {
  for_each = var.create_sql_instance && var.db_iam_auth ? local.database_components : toset([])

  project  = var.project_id
  instance = google_sql_database_instance.main[0].name
  name     = google_service_account.component[each.value].email
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# The trainer: a Cloud Run job running the debiased LSTM pipeline (jobs/trainer/Dockerfile).
# train_trigger runs it with per-run environment overrides (REQUEST_ID, REASON, ...); the
# daily forecast schedule runs it with the arguments "--mode forecast". With the shared
# Optuna study, task_count tasks tune into one study (task 0 also trains and reports).
#
# The migration job runs `forecastguard db upgrade` from the same image, inside the apply:
# with migration_token set (cloudbuild.yaml passes the plan build's id) the job starts an
# execution and becomes ready only when it succeeded (Cloud Run's runExecutionToken), and
# the trainer job and the functions wait for it. So the schema is upgraded before new code
# runs, with no targeted apply outside the reviewed plan, and the migration's login checks
# the one database credential (db-pass against the SQL user) on every deployment.

# Issue 26: one task per partition of the catalogue (catalogue_products / partition size,
# capped); with one partition, the tuning tasks of the shared study as before.
locals {
  trainer_partition_tasks = min(
    var.trainer_max_tasks,
    max(1, ceil(var.catalogue_products / var.trainer_partition_size)),
  )
}

resource "google_cloud_run_v2_job" "trainer" {
  project             = var.project_id
  location            = var.region
  name                = local.trainer_job_name
  deletion_protection = false

  template {
    task_count = max(local.trainer_task_count, local.trainer_partition_tasks)

    template {
      service_account = google_service_account.component["trainer"].email
      timeout         = "${var.trainer_timeout_s}s"
      max_retries     = var.trainer_max_retries

      # sql_private_ip: the instance's private address through the VPC connector.
      dynamic "vpc_access" {
        for_each = var.sql_private_ip ? [local.vpc_connector] : []
        content {
          connector = vpc_access.value
          egress    = "PRIVATE_RANGES_ONLY"
        }
      }

      containers {
        image = var.trainer_image
        args  = ["--mode", "train"]

        resources {
          limits = {
            cpu    = var.trainer_cpu
            memory = var.trainer_memory
          }
        }

        dynamic "env" {
          for_each = merge(local.common_env, local.trainer_env)
          content {
            name  = env.key
            value = env.value
          }
        }

        # DB_PASS (password login; also the shared study's), SMTP_PASSWORD (email on).
        dynamic "env" {
          for_each = merge(local.db_pass_secrets, local.smtp_secrets)
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }

        # The Cloud SQL socket the Optuna URL points at (/cloudsql/<connection name>).
        volume_mounts {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
      }

      volumes {
        name = "cloudsql"
        cloud_sql_instance {
          instances = [local.cloud_sql_instance]
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = local.cloud_sql_instance != ""
      error_message = "Set existing_sql_instance (project:region:instance) when create_sql_instance is false."
    }
  }

  depends_on = [
    google_secret_manager_secret_version.db_pass,
    google_secret_manager_secret_iam_member.trainer_reads_smtp,
    google_cloud_run_v2_job.migrate,
    time_sleep.iam_propagation,
  ]
}

# Schema migrations: the trainer image has the forecastguard library and its CLI.
# google-beta: run_execution_token is a beta field of the provider (the API's is GA).
resource "google_cloud_run_v2_job" "migrate" {
  provider = google-beta

  project             = var.project_id
  location            = var.region
  name                = local.migrate_job_name
  deletion_protection = false
  # The API does not return the token, so every plan shows it: each applied plan runs
  # the migration once (it is idempotent), and a failed migration fails the apply.
  run_execution_token = var.migration_token == "" ? null : var.migration_token

  template {
    task_count = 1

    template {
      service_account = google_service_account.component["migrate"].email
      timeout         = "600s"
      max_retries     = 1

      dynamic "vpc_access" {
        for_each = var.sql_private_ip ? [local.vpc_connector] : []
        content {
          connector = vpc_access.value
          egress    = "PRIVATE_RANGES_ONLY"
        }
      }

      containers {
        image   = var.trainer_image
        command = ["forecastguard"]
        args    = ["db", "upgrade"]

        resources {
          limits = {
            cpu    = "1"
            memory = "1Gi"
          }
        }

        dynamic "env" {
          for_each = merge(local.common_env, local.migrate_env)
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = local.db_pass_secrets
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = length("${local.migrate_job_name}-${var.migration_token}") < 63
      error_message = "The migration job's name and migration_token must be shorter than 63 characters together."
    }
  }

  depends_on = [
    google_sql_database.forecastguard,
    google_sql_user.password,
    google_secret_manager_secret_version.db_pass,
    time_sleep.iam_propagation,
  ]
}

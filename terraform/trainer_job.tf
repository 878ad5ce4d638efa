# The trainer: a Cloud Run job running the debiased LSTM pipeline (jobs/trainer/Dockerfile).
# train_trigger runs it with per-run environment overrides (REQUEST_ID, REASON, ...); the
# daily forecast schedule runs it with the arguments "--mode forecast".

resource "google_cloud_run_v2_job" "trainer" {
  project             = var.project_id
  location            = var.region
  name                = local.trainer_job_name
  deletion_protection = false

  template {
    task_count = var.trainer_task_count

    template {
      service_account = google_service_account.component["trainer"].email
      timeout         = "${var.trainer_timeout_s}s"
      max_retries     = var.trainer_max_retries

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

        env {
          name = "SMTP_PASSWORD"
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.secret["smtp-password"].secret_id
              version = "latest"
            }
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
      condition     = local.cloud_sql_instance != ""
      error_message = "Set existing_sql_instance (project:region:instance) when create_sql_instance is false."
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.reader, google_project_service.apis]
}

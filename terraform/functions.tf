# The three Cloud Functions (gen2). scripts/stage_functions.py writes each function's
# self-contained folder (forecastguard vendored, listed in requirements.txt by path);
# archive_file zips it and the zip's MD5 goes into the object name, so changed code
# (and only changed code) redeploys.
#
#   health_http    HTTPS /model/health, entry point health_http
#   health_pubsub  the same code, pushed health-check-requests, entry point health_pubsub
#   train_trigger  pushed retrain-requests, entry point on_retrain_request
#
# The event-driven two are plain HTTP services to Cloud Functions: their Pub/Sub push
# subscriptions (pubsub.tf) deliver the messages, retry failures with backoff and move a
# message to the dead-letter topic after max_delivery_attempts. functions-framework turns
# the push body into the same CloudEvent Eventarc delivered (the entry points are
# @cloud_event functions; tests/infra/test_push_delivery.py).

locals {
  staged = {
    health        = "${path.module}/${var.staged_functions_dir}/health"
    train_trigger = "${path.module}/${var.staged_functions_dir}/train_trigger"
  }
}

data "archive_file" "function" {
  for_each = local.staged

  type             = "zip"
  source_dir       = each.value
  output_path      = "${path.module}/.build/${each.key}.zip"
  output_file_mode = "0644"
  excludes         = ["__pycache__", "**/__pycache__/**", "**/*.pyc"]
}

resource "google_storage_bucket_object" "function_source" {
  for_each = data.archive_file.function

  bucket = google_storage_bucket.sources.name
  name   = "functions/${each.key}-${each.value.output_md5}.zip"
  source = each.value.output_path
}

resource "google_cloudfunctions2_function" "health_http" {
  #checkov:skip=CKV_GCP_124:Ingress is ALLOW_ALL so named callers outside Google Cloud can reach /model/health, but invocation is IAM-gated (run.invoker only for the health_callers emails unless health_http_public) and the function checks the ID token's email against HEALTH_ALLOWED_CALLERS.
  project     = var.project_id
  location    = var.region
  name        = local.function_names.health_http
  description = "forecastguard health check, HTTPS /model/health (allowed callers' Google ID tokens, or the bearer token)"

  build_config {
    runtime           = var.function_runtime
    entry_point       = "health_http"
    service_account   = google_service_account.component["fn-build"].id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.function_source["health"].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.component["health"].email
    min_instance_count               = var.health_min_instances
    max_instance_count               = var.health_max_instances
    available_memory                 = var.function_memory
    timeout_seconds                  = var.health_timeout_s
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    environment_variables            = merge(local.common_env, local.health_check_env, local.health_engine_env, local.health_http_env)
    max_instance_request_concurrency = 1
    # sql_private_ip: the instance's private address through the VPC connector.
    vpc_connector                 = local.vpc_connector
    vpc_connector_egress_settings = var.sql_private_ip ? "PRIVATE_RANGES_ONLY" : null

    secret_environment_variables {
      key        = "HEALTH_API_TOKEN"
      project_id = var.project_id
      secret     = google_secret_manager_secret.secret["health-api-token"].secret_id
      version    = "latest"
    }

    dynamic "secret_environment_variables" {
      for_each = local.db_pass_secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  # Versions exist, grants have propagated and the schema is migrated before the first
  # instance of new code starts.
  depends_on = [
    google_secret_manager_secret_version.health_api_token,
    google_secret_manager_secret_version.db_pass,
    google_cloud_run_v2_job.migrate,
    time_sleep.iam_propagation,
  ]
}

resource "google_cloudfunctions2_function" "health_pubsub" {
  project     = var.project_id
  location    = var.region
  name        = local.function_names.health_pubsub
  description = "forecastguard health check, pushed ${var.health_topic_name} by its Pub/Sub subscription"

  build_config {
    runtime           = var.function_runtime
    entry_point       = "health_pubsub"
    service_account   = google_service_account.component["fn-build"].id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.function_source["health"].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.component["health"].email
    min_instance_count               = var.health_min_instances
    max_instance_count               = var.health_max_instances
    available_memory                 = var.function_memory
    timeout_seconds                  = var.health_timeout_s
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    environment_variables            = merge(local.common_env, local.health_check_env, local.health_engine_env, local.health_scale_env)
    max_instance_request_concurrency = 1
    # sql_private_ip: the instance's private address through the VPC connector.
    vpc_connector                 = local.vpc_connector
    vpc_connector_egress_settings = var.sql_private_ip ? "PRIVATE_RANGES_ONLY" : null

    dynamic "secret_environment_variables" {
      for_each = local.db_pass_secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  # With scale_enabled it may launch the Flex Template from its first event: the spec first.
  depends_on = [
    google_secret_manager_secret_version.db_pass,
    google_cloud_run_v2_job.migrate,
    google_storage_bucket_object.dataflow_template,
    time_sleep.iam_propagation,
  ]
}

resource "google_cloudfunctions2_function" "train_trigger" {
  project     = var.project_id
  location    = var.region
  name        = local.function_names.train_trigger
  description = "forecastguard train_trigger, pushed ${var.retrain_topic_name} by its Pub/Sub subscription: runs the trainer job"

  build_config {
    runtime           = var.function_runtime
    entry_point       = "on_retrain_request"
    service_account   = google_service_account.component["fn-build"].id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.function_source["train_trigger"].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.component["train-trigger"].email
    min_instance_count               = var.train_trigger_min_instances
    max_instance_count               = var.train_trigger_max_instances
    available_memory                 = var.function_memory
    timeout_seconds                  = var.train_trigger_timeout_s
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    environment_variables            = merge(local.common_env, local.train_trigger_env)
    max_instance_request_concurrency = 1
    # sql_private_ip: the instance's private address through the VPC connector.
    vpc_connector                 = local.vpc_connector
    vpc_connector_egress_settings = var.sql_private_ip ? "PRIVATE_RANGES_ONLY" : null

    dynamic "secret_environment_variables" {
      for_each = local.db_pass_secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_version.db_pass,
    google_cloud_run_v2_job.migrate,
    time_sleep.iam_propagation,
  ]
}

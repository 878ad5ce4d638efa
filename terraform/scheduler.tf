# Two daily schedules, both calling a Google API as the scheduler's service account: the
# health check (a message published on health-check-requests) and the forecast-only run
# of the trainer job (Cloud Run Admin API jobs.run with an args override).

resource "google_cloud_scheduler_job" "health_check" {
  project     = var.project_id
  region      = var.region
  name        = "${var.name_prefix}-daily-health-check"
  description = "Daily forecastguard health check"
  schedule    = var.health_check_schedule
  time_zone   = var.schedule_time_zone

  retry_config {
    retry_count = 3
  }

  # Publish through the Pub/Sub API as the scheduler's own account (which holds the
  # publisher role on this one topic), rather than as the Cloud Scheduler service agent.
  http_target {
    http_method = "POST"
    uri         = "https://pubsub.googleapis.com/v1/${google_pubsub_topic.health.id}:publish"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode(jsonencode({
      messages = [{
        # An empty request: check the default window (as_of yesterday, WINDOW_DAYS).
        data       = base64encode(jsonencode({}))
        attributes = { origin = "cloud-scheduler" }
      }]
    }))

    oauth_token {
      service_account_email = google_service_account.component["scheduler"].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_pubsub_topic_iam_member.scheduler_publishes_health, time_sleep.iam_propagation]
}

resource "google_cloud_scheduler_job" "daily_forecast" {
  project     = var.project_id
  region      = var.region
  name        = "${var.name_prefix}-daily-forecast"
  description = "Daily forecast-only run of the trainer job"
  schedule    = var.forecast_schedule
  time_zone   = var.schedule_time_zone

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/${google_cloud_run_v2_job.trainer.id}:run"
    headers = {
      "Content-Type" = "application/json"
    }
    # One task: the job's task_count is for parallel tuning, a forecast is made once (the
    # trainer also leaves at once in forecast mode on any task but 0).
    body = base64encode(jsonencode({
      overrides = {
        taskCount          = 1
        containerOverrides = [{ args = ["--mode", "forecast"] }]
      }
    }))

    oauth_token {
      service_account_email = google_service_account.component["scheduler"].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.runs_trainer]
}

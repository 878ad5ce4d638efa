# Cloud Monitoring: the health function's custom metrics (declared here so the alert policy
# and the dashboard can refer to them before the first check writes), an alert when the
# model is unhealthy, and a dashboard of average RMSE, global p-value and drifted share.

locals {
  metrics = {
    healthy        = { name = "Model healthy", unit = "1", description = "1 when the last health check found the model healthy, 0 otherwise." }
    avg_rmse       = { name = "Average RMSE", unit = "1", description = "Average per-product RMSE of the served forecasts over the window." }
    global_p_value = { name = "Global p-value", unit = "1", description = "Combined p-value of the per-product drift tests on forecast errors." }
    drifted_share  = { name = "Share of drifted products", unit = "1", description = "Share of tested products whose errors drifted (after the FDR correction)." }
  }
}

resource "google_monitoring_metric_descriptor" "health" {
  for_each = local.metrics

  project      = var.project_id
  type         = "${local.metric_prefix}/${each.key}"
  display_name = "forecastguard: ${each.value.name}"
  description  = each.value.description
  metric_kind  = "GAUGE"
  value_type   = "DOUBLE"
  unit         = each.value.unit

  depends_on = [time_sleep.apis]
}

# A new metric descriptor is not usable at once: an alert policy or a dashboard naming it is
# refused with 404 "Cannot find metric(s)" for up to about ten minutes
# (terraform-provider-google #11102). Wait after creating (or changing) the descriptors;
# this runs while the Cloud SQL instance is being created, so a first apply hardly waits.
resource "time_sleep" "metric_descriptors" {
  create_duration = var.metric_descriptor_wait
  triggers        = { types = join(",", sort([for d in google_monitoring_metric_descriptor.health : d.type])) }
}

resource "google_monitoring_alert_policy" "unhealthy" {
  project      = var.project_id
  display_name = "forecastguard: model unhealthy"
  combiner     = "OR"
  severity     = "WARNING"

  conditions {
    display_name = "healthy < 1"
    condition_threshold {
      filter          = "metric.type=\"${google_monitoring_metric_descriptor.health["healthy"].type}\" AND resource.type=\"global\""
      comparison      = "COMPARISON_LT"
      threshold_value = 1
      duration        = "0s"

      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_MIN"
      }

      trigger {
        count = 1
      }
    }
  }

  notification_channels = var.alert_notification_channels

  alert_strategy {
    auto_close = "172800s"
  }

  depends_on = [time_sleep.metric_descriptors]

  documentation {
    mime_type = "text/markdown"
    content   = "The last forecastguard health check found the model unhealthy: a retrain request was published to `${var.retrain_topic_name}`. Follow the trainer job `${local.trainer_job_name}` and its report email; failed messages wait on `${google_pubsub_subscription.dead_letter.name}`.\n\n**Why**: the newest check's report (verdict, figures against thresholds, the drifted products' forecasts and errors): https://storage.cloud.google.com/${google_storage_bucket.artifacts.name}/${var.artifact_prefix}/health/latest/report.html (opens for accounts with read access to the bucket; each check's own report is `gs://${google_storage_bucket.artifacts.name}/${var.artifact_prefix}/health/<check_id>/report.html`, and `gcloud storage sign-url ... --duration=1h --impersonate-service-account=SA` shares one)."
  }
}

locals {
  dashboard_tiles = [
    for i, key in ["avg_rmse", "global_p_value", "drifted_share", "healthy"] : {
      xPos   = (i % 2) * 6
      yPos   = floor(i / 2) * 4
      width  = 6
      height = 4
      widget = {
        title = local.metrics[key].name
        xyChart = {
          dataSets = [{
            plotType = "LINE"
            timeSeriesQuery = {
              timeSeriesFilter = {
                filter = "metric.type=\"${local.metric_prefix}/${key}\" AND resource.type=\"global\""
                aggregation = {
                  alignmentPeriod  = "86400s"
                  perSeriesAligner = "ALIGN_MEAN"
                }
              }
            }
          }]
          thresholds = key == "avg_rmse" ? [{ value = var.rmse_threshold, label = "RMSE_THRESHOLD" }] : []
        }
      }
    }
  ]
}

resource "google_monitoring_dashboard" "health" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName  = "forecastguard model health"
    mosaicLayout = { columns = 12, tiles = local.dashboard_tiles }
  })

  depends_on = [time_sleep.metric_descriptors]
}

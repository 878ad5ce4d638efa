# BigQuery, the data plane at scale (issue 24): sales, predictions, the champion's holdout
# errors and the per-product results of each check, each table partitioned by day and
# clustered by product, so a batch's read (a product range, a date range) touches only its
# blocks. Created only with scale_enabled. The columns are forecastguard.bigquery.TABLES'
# (tests/infra checks they agree). Cloud SQL keeps the summaries, the ledger, the registry.

locals {
  bigquery_tables = {
    sales = {
      partition = "sale_date"
      cluster   = ["product_id"]
      columns = [
        ["product_id", "STRING", "REQUIRED"],
        ["sale_date", "DATE", "REQUIRED"],
        ["units_sold", "FLOAT64", "REQUIRED"],
      ]
    }
    predictions = {
      partition = "target_date"
      cluster   = ["product_id"]
      columns = [
        ["product_id", "STRING", "REQUIRED"],
        ["target_date", "DATE", "REQUIRED"],
        ["predicted_units", "FLOAT64", "REQUIRED"],
        ["model_version", "STRING", "REQUIRED"],
        ["created_at", "TIMESTAMP", "REQUIRED"],
        ["predicted_p10", "FLOAT64", "NULLABLE"],
        ["predicted_p50", "FLOAT64", "NULLABLE"],
        ["predicted_p90", "FLOAT64", "NULLABLE"],
      ]
    }
    model_residuals = {
      partition = "target_date"
      cluster   = ["model_version", "product_id"]
      columns = [
        ["model_version", "STRING", "REQUIRED"],
        ["product_id", "STRING", "REQUIRED"],
        ["target_date", "DATE", "REQUIRED"],
        ["error", "FLOAT64", "REQUIRED"],
      ]
    }
    health_check_products = {
      partition = "as_of"
      cluster   = ["product_id"]
      columns = [
        ["health_check_id", "STRING", "REQUIRED"],
        ["as_of", "DATE", "REQUIRED"],
        ["product_id", "STRING", "REQUIRED"],
        ["n", "INT64", "REQUIRED"],
        ["rmse", "FLOAT64", "NULLABLE"],
        ["mae", "FLOAT64", "NULLABLE"],
        ["bias", "FLOAT64", "NULLABLE"],
        ["rmsse", "FLOAT64", "NULLABLE"],
        ["ks_pvalue", "FLOAT64", "NULLABLE"],
        ["ks_qvalue", "FLOAT64", "NULLABLE"],
        ["drift", "BOOL", "REQUIRED"],
        ["drift_kind", "STRING", "NULLABLE"],
        ["drift_test", "STRING", "NULLABLE"],
        ["drift_pvalue", "FLOAT64", "NULLABLE"],
        ["drift_qvalue", "FLOAT64", "NULLABLE"],
        ["bias_shift", "FLOAT64", "NULLABLE"],
        ["bias_shift_sd", "FLOAT64", "NULLABLE"],
        ["spread_ratio", "FLOAT64", "NULLABLE"],
        ["reference", "STRING", "NULLABLE"],
      ]
    }
  }
  bigquery_url = "bigquery://${var.project_id}/${var.bigquery_dataset_id}"
}

resource "google_bigquery_dataset" "scale" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption by default; set a CMEK with default_encryption_configuration where policy requires it (sales and forecasts, no personal data).
  count = var.scale_enabled ? 1 : 0

  project       = var.project_id
  dataset_id    = var.bigquery_dataset_id
  location      = var.bigquery_location != "" ? var.bigquery_location : var.region
  description   = "forecastguard at scale: sales, forecasts, holdout errors, per-product check results"
  labels        = var.labels
  friendly_name = "forecastguard"

  depends_on = [time_sleep.apis, google_project_service.scale]
}

resource "google_bigquery_table" "scale" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption by default (the dataset's setting applies); sales and forecasts hold no personal data.
  for_each = var.scale_enabled ? local.bigquery_tables : {}

  project             = var.project_id
  dataset_id          = google_bigquery_dataset.scale[0].dataset_id
  table_id            = each.key
  deletion_protection = var.bigquery_deletion_protection
  labels              = var.labels

  time_partitioning {
    type  = "DAY"
    field = each.value.partition
  }
  clustering = each.value.cluster

  schema = jsonencode([for c in each.value.columns : { name = c[0], type = c[1], mode = c[2] }])
}

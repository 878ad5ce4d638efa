# The artifact bucket (trainer runs, champion pointer) and the bucket of function sources.

resource "google_storage_bucket" "artifacts" {
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (data access), which Google recommends over legacy usage logs.
  project  = var.project_id
  name     = local.artifact_bucket_name
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = true
  }

  # Old runs move to cheaper storage; they stay readable (the champion's run among them).
  lifecycle_rule {
    condition {
      age            = var.run_coldline_after_days
      matches_prefix = ["${var.artifact_prefix}/runs/"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "COLDLINE"
    }
  }

  # Optionally delete old runs outright.
  dynamic "lifecycle_rule" {
    for_each = var.run_delete_after_days == null ? [] : [var.run_delete_after_days]
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = ["${var.artifact_prefix}/runs/"]
      }
      action {
        type = "Delete"
      }
    }
  }

  # Overwritten versions (champion.json, manifests) are kept for a while, then dropped.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds only the zipped function sources Terraform uploads; Cloud Audit Logs record access.
  project  = var.project_id
  name     = local.sources_bucket_name
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

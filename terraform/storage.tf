# The artifact bucket (trainer runs, champion pointer) and the bucket of function sources.

resource "google_storage_bucket" "artifacts" {
  #checkov:skip=CKV_GCP_62:Reads and writes are recorded by Cloud Audit Logs Data Access logs for storage.googleapis.com (google_project_iam_audit_config.storage below), which Google recommends over legacy usage logs.
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

  depends_on = [time_sleep.apis]
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds only the zipped function sources Terraform uploads; reads and writes are recorded by the storage Data Access audit logs (google_project_iam_audit_config.storage below).
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

  depends_on = [time_sleep.apis]
}

# Data Access audit logs for Cloud Storage (off by default): who read or wrote which object
# in the artifact and source buckets. Admin Activity logs are always on. This is the
# project's audit config for storage.googleapis.com (non-authoritative for other services).
resource "google_project_iam_audit_config" "storage" {
  project = var.project_id
  service = "storage.googleapis.com"

  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}

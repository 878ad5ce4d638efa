# Docker repository of the trainer image (cloudbuild.yaml pushes, the Cloud Run job pulls).

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; the image holds code and libraries, no data or secrets.
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_registry_repository_id
  format        = "DOCKER"
  description   = "forecastguard trainer images"

  # Keep the ten newest images; untagged leftovers of rebuilt tags go after 30 days.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }

  depends_on = [time_sleep.apis]
}

# The functions' images: Cloud Functions pushes each build here (build_config.docker_repository)
# instead of the gcf-artifacts repository it would create, so the build account's writer role
# is on this repository alone.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; the images hold the functions' code and libraries, no data or secrets.
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  format        = "DOCKER"
  description   = "forecastguard Cloud Functions images (built by the fn-build account)"

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }

  depends_on = [time_sleep.apis]
}

# Cloud Run pulls the image as its service agent, which reads same-project repositories:
# the trainer's own account needs no role here.

# scripts/bootstrap.sh creates the repository (the first build pushes the image before the
# first apply); Terraform adopts it here and manages it from then on.
import {
  to = google_artifact_registry_repository.images
  id = "projects/${var.project_id}/locations/${var.region}/repositories/${var.artifact_registry_repository_id}"
}

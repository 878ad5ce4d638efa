# Provider ranges:
#   google / google-beta >= 6.23: write-only secret_data_wo (Secret Manager) and password_wo
#     (Cloud SQL users), so generated secrets never enter the state; google-beta only for
#     google_project_service_identity (the Pub/Sub service agent, created before it is granted).
#   random >= 3.7.1: the ephemeral random_password feeding those write-only arguments.
#   time: time_sleep where IAM grants must propagate before they are used.
#   archive: zips the staged function folders.
# Terraform >= 1.11: ephemeral resources and write-only arguments.
terraform {
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.23, < 7.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.23, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7.1, < 4.0"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.11, < 1.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }

  # State lives in a GCS bucket named at init time (scripts/bootstrap.sh creates it):
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=forecastguard"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge({ app = "forecastguard" }, var.labels)
}

provider "google-beta" {
  project = var.project_id
  region  = var.region

  default_labels = merge({ app = "forecastguard" }, var.labels)
}

# Provider ranges: google 6.x (Cloud Functions gen2, Cloud Run v2 jobs, ssl_mode on Cloud SQL);
# archive zips the staged function folders.
terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 7.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }

  # State lives in a GCS bucket named at init time:
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=forecastguard"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge({ app = "forecastguard" }, var.labels)
}

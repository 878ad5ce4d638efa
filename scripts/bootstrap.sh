#!/usr/bin/env bash
# One-time bootstrap of a Google Cloud project for forecastguard: everything the pipeline
# (cloudbuild.yaml) needs before Terraform can run. Idempotent: re-running changes nothing.
#
#   scripts/bootstrap.sh PROJECT_ID [REGION]
#   # optional: approval-gated Cloud Build triggers on a connected GitHub repository
#   GITHUB_OWNER=me GITHUB_REPO=forecastguard scripts/bootstrap.sh PROJECT_ID [REGION]
#
# It creates:
#   1. the APIs the pipeline needs before Terraform (Terraform enables the others);
#   2. the Terraform state bucket gs://PROJECT_ID-tfstate (versioned, uniform access,
#      public access prevention);
#   3. the Artifact Registry repository the first build pushes to (Terraform adopts it);
#   4. the build account forecastguard-deployer with deployer roles only (listed below),
#      which cloudbuild.yaml runs as, and lets you (the caller) submit builds as it;
#   5. with GITHUB_OWNER/GITHUB_REPO: a plan trigger on every push to main and an apply
#      trigger that waits for a person's approval.
#
# Roles of the build account, on the project: what creating and changing the module's
# resources takes. No Owner/Editor, and no project-wide Service Account User: Terraform
# grants it Service Account User on each component account only (iam.tf, deployer_acts_as).
set -euo pipefail

PROJECT="${1:?usage: scripts/bootstrap.sh PROJECT_ID [REGION]}"
REGION="${2:-europe-west1}"
STATE_BUCKET="${STATE_BUCKET:-${PROJECT}-tfstate}"
AR_REPO="${AR_REPO:-forecastguard}"
DEPLOYER="forecastguard-deployer"
DEPLOYER_EMAIL="${DEPLOYER}@${PROJECT}.iam.gserviceaccount.com"

DEPLOYER_ROLES=(
  roles/serviceusage.serviceUsageAdmin    # enable the module's APIs
  roles/iam.serviceAccountAdmin           # component accounts and their IAM
  roles/resourcemanager.projectIamAdmin   # project grants (conditioned Cloud SQL ones) and audit config
  roles/cloudfunctions.admin
  roles/run.admin
  roles/pubsub.admin
  roles/cloudscheduler.admin
  roles/secretmanager.admin
  roles/cloudsql.admin
  roles/storage.admin                     # buckets, and the state bucket's objects
  roles/artifactregistry.admin
  roles/monitoring.editor
  roles/logging.logWriter                 # the build's own logs (CLOUD_LOGGING_ONLY)
)

log() { printf '\n== %s\n' "$*"; }

log "APIs the pipeline needs before Terraform"
gcloud services enable --project="$PROJECT" \
  serviceusage.googleapis.com cloudresourcemanager.googleapis.com iam.googleapis.com \
  cloudbuild.googleapis.com storage.googleapis.com artifactregistry.googleapis.com

log "Terraform state bucket gs://$STATE_BUCKET"
if ! gcloud storage buckets describe "gs://$STATE_BUCKET" --project="$PROJECT" >/dev/null 2>&1; then
  gcloud storage buckets create "gs://$STATE_BUCKET" --project="$PROJECT" --location="$REGION" \
    --uniform-bucket-level-access --public-access-prevention
fi
gcloud storage buckets update "gs://$STATE_BUCKET" --versioning

log "Artifact Registry repository $AR_REPO"
if ! gcloud artifacts repositories describe "$AR_REPO" --project="$PROJECT" --location="$REGION" >/dev/null 2>&1; then
  gcloud artifacts repositories create "$AR_REPO" --project="$PROJECT" --location="$REGION" \
    --repository-format=docker --description="forecastguard trainer images"
fi

log "Build account $DEPLOYER_EMAIL"
if ! gcloud iam service-accounts describe "$DEPLOYER_EMAIL" --project="$PROJECT" >/dev/null 2>&1; then
  gcloud iam service-accounts create "$DEPLOYER" --project="$PROJECT" \
    --display-name="forecastguard deployer (Cloud Build)"
fi
for role in "${DEPLOYER_ROLES[@]}"; do
  gcloud projects add-iam-policy-binding "$PROJECT" --condition=None --quiet \
    --member="serviceAccount:$DEPLOYER_EMAIL" --role="$role" >/dev/null
done
# Whoever runs this may submit builds that run as the build account.
CALLER="$(gcloud config get-value account 2>/dev/null)"
if [ -n "$CALLER" ]; then
  case "$CALLER" in
    *.gserviceaccount.com) member="serviceAccount:$CALLER" ;;
    *) member="user:$CALLER" ;;
  esac
  gcloud iam service-accounts add-iam-policy-binding "$DEPLOYER_EMAIL" --project="$PROJECT" \
    --member="$member" --role=roles/iam.serviceAccountUser --quiet >/dev/null
fi

if [ -n "${GITHUB_OWNER:-}" ] && [ -n "${GITHUB_REPO:-}" ]; then
  log "Cloud Build triggers on github.com/$GITHUB_OWNER/$GITHUB_REPO"
  common=(--project="$PROJECT" --repo-owner="$GITHUB_OWNER" --repo-name="$GITHUB_REPO"
    --branch-pattern='^main$' --build-config=cloudbuild.yaml
    --service-account="projects/$PROJECT/serviceAccounts/$DEPLOYER_EMAIL")
  gcloud builds triggers describe forecastguard-plan --project="$PROJECT" >/dev/null 2>&1 ||
    gcloud builds triggers create github --name=forecastguard-plan "${common[@]}" \
      --substitutions="_TF_STATE_BUCKET=$STATE_BUCKET,_REGION=$REGION,_APPLY=false"
  gcloud builds triggers describe forecastguard-apply --project="$PROJECT" >/dev/null 2>&1 ||
    gcloud builds triggers create github --name=forecastguard-apply "${common[@]}" \
      --require-approval \
      --substitutions="_TF_STATE_BUCKET=$STATE_BUCKET,_REGION=$REGION,_APPLY=true"
fi

log "Done. Deploy with one pipeline run:"
echo "  gcloud builds submit --project=$PROJECT --region=$REGION --config cloudbuild.yaml \\"
echo "    --substitutions=_TF_STATE_BUCKET=$STATE_BUCKET,_REGION=$REGION,_APPLY=true"

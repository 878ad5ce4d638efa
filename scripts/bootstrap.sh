#!/usr/bin/env bash
# One-time bootstrap of a Google Cloud project for forecastguard: everything the pipeline
# (cloudbuild.yaml, cloudbuild-apply.yaml) needs before Terraform can run. Idempotent:
# every step checks what exists first, so a re-run after a failure resumes where it stopped.
#
#   scripts/bootstrap.sh PROJECT_ID [REGION]
#   # Cloud SQL on a private address (Terraform's sql_private_ip = true)
#   SQL_PRIVATE_IP=1 scripts/bootstrap.sh PROJECT_ID [REGION]
#   # the health check at scale (Terraform's scale_enabled = true: BigQuery, Dataflow)
#   SCALE=1 scripts/bootstrap.sh PROJECT_ID [REGION]
#   # who may approve applies (default: you), and the triggers on a connected GitHub repository
#   APPROVERS=user:ops@example.com,group:deployers@example.com \
#   GITHUB_OWNER=me GITHUB_REPO=forecastguard scripts/bootstrap.sh PROJECT_ID [REGION]
#
# It creates:
#   1. every API terraform/apis.tf uses (so none is fresh when Terraform first calls it),
#      then waits until Service Usage lists them all;
#   2. the Terraform state bucket gs://PROJECT_ID-tfstate (versioned, uniform access,
#      public access prevention); saved plans go under its plans/ prefix;
#   3. the Artifact Registry repository the first plan build pushes to (Terraform adopts it);
#   4. the planner account forecastguard-planner, read-only: it runs the plan build on every
#      push (repository code), so it can read the project and the state, add plan bundles
#      under plans/ (never overwrite one) and push trainer images; it can change nothing;
#   5. the deployer account forecastguard-deployer with deployer roles only (listed below),
#      which only the approval-gated apply runs as; Project IAM Admin is conditioned on the
#      roles Terraform grants (so it cannot make itself Owner), secrets through a custom role
#      that cannot read secret values;
#   6. roles/cloudbuild.builds.approver for APPROVERS, and for you the right to submit plan
#      builds (Service Account User on the planner only: nobody submits builds as the
#      deployer, the apply trigger runs them after an approval);
#   7. with GITHUB_OWNER/GITHUB_REPO: the trigger forecastguard-plan (every push to main)
#      and the manual trigger forecastguard-apply (--require-approval, _PLAN_BUILD_ID).
set -euo pipefail

PROJECT="${1:?usage: scripts/bootstrap.sh PROJECT_ID [REGION]}"
REGION="${2:-europe-west1}"
STATE_BUCKET="${STATE_BUCKET:-${PROJECT}-tfstate}"
AR_REPO="${AR_REPO:-forecastguard}"
DEPLOYER="forecastguard-deployer"
DEPLOYER_EMAIL="${DEPLOYER}@${PROJECT}.iam.gserviceaccount.com"
PLANNER="forecastguard-planner"
PLANNER_EMAIL="${PLANNER}@${PROJECT}.iam.gserviceaccount.com"
SECRET_ROLE="forecastguardSecretDeployer"

# The same list as terraform/apis.tf (tests/infra checks they agree).
APIS=(
  artifactregistry.googleapis.com
  cloudbuild.googleapis.com
  cloudfunctions.googleapis.com
  cloudresourcemanager.googleapis.com
  cloudscheduler.googleapis.com
  iam.googleapis.com
  iamcredentials.googleapis.com
  logging.googleapis.com
  monitoring.googleapis.com
  pubsub.googleapis.com
  run.googleapis.com
  secretmanager.googleapis.com
  serviceusage.googleapis.com
  sqladmin.googleapis.com
  storage.googleapis.com
)
# With SQL_PRIVATE_IP=1 (terraform/apis.tf's private_ip_apis) and what the deployer then
# manages: the VPC, private services access, the Serverless VPC Access connector.
PRIVATE_APIS=(
  compute.googleapis.com
  servicenetworking.googleapis.com
  vpcaccess.googleapis.com
)
PRIVATE_DEPLOYER_ROLES=(
  roles/compute.networkAdmin
  roles/servicenetworking.networksAdmin
  roles/vpcaccess.admin
)
# With SCALE=1 (terraform/dataflow.tf, scale_enabled): its APIs, enabled before the first
# plan like the others, and the deployer's right to create the dataset and set its IAM.
SCALE_APIS=(
  bigquery.googleapis.com
  bigquerystorage.googleapis.com
  dataflow.googleapis.com
)
SCALE_DEPLOYER_ROLES=(
  roles/bigquery.dataOwner
)
DEPLOYER_ROLES_EXTRA=()
if [ "${SQL_PRIVATE_IP:-0}" = 1 ]; then
  APIS+=("${PRIVATE_APIS[@]}")
  DEPLOYER_ROLES_EXTRA+=("${PRIVATE_DEPLOYER_ROLES[@]}")
fi
if [ "${SCALE:-0}" = 1 ]; then
  APIS+=("${SCALE_APIS[@]}")
  DEPLOYER_ROLES_EXTRA+=("${SCALE_DEPLOYER_ROLES[@]}")
fi

# Roles of the deployer, on the project: what creating and changing the module's resources
# takes. No Owner/Editor, no project-wide Service Account User (Terraform grants it Service
# Account User on each component account only: deployer_acts_as in terraform/iam.tf).
DEPLOYER_ROLES=(
  roles/serviceusage.serviceUsageAdmin    # enable the module's APIs
  roles/iam.serviceAccountAdmin           # component accounts and their IAM
  roles/cloudfunctions.admin
  roles/run.admin
  roles/pubsub.admin
  roles/cloudscheduler.admin
  roles/cloudsql.admin
  roles/storage.admin                     # buckets, their IAM, the state and the plans
  roles/artifactregistry.admin
  roles/monitoring.editor
  roles/logging.logWriter                 # the build's own logs (CLOUD_LOGGING_ONLY)
)
# Project IAM Admin, only for the project roles Terraform grants (terraform/iam.tf; tests/infra
# checks this list covers them). Without the condition it could grant itself Owner.
GRANTABLE_ROLES=(
  roles/cloudsql.client
  roles/cloudsql.instanceUser
  roles/logging.logWriter
  roles/monitoring.metricWriter
  roles/storage.objectViewer
  # scale_enabled (terraform/dataflow.tf): the Dataflow workers, the health function's
  # launch and a BigQuery installation's trainer
  roles/bigquery.jobUser
  roles/bigquery.readSessionUser
  roles/dataflow.developer
  roles/dataflow.worker
)
# Secrets without secretmanager.versions.access: create them, add generated versions, set
# who reads them, but never read a value (Secret Manager Admin could).
SECRET_PERMISSIONS=(
  secretmanager.secrets.create
  secretmanager.secrets.delete
  secretmanager.secrets.get
  secretmanager.secrets.list
  secretmanager.secrets.update
  secretmanager.secrets.getIamPolicy
  secretmanager.secrets.setIamPolicy
  secretmanager.versions.add
  secretmanager.versions.destroy
  secretmanager.versions.disable
  secretmanager.versions.enable
  secretmanager.versions.get
  secretmanager.versions.list
)
# The planner: read the project and its IAM policies, write its build logs.
PLANNER_ROLES=(
  roles/viewer
  roles/iam.securityReviewer
  roles/logging.logWriter
)

log() { printf '\n== %s\n' "$*"; }
join() { local IFS="$1"; shift; echo "$*"; }

log "APIs (every one Terraform uses)"
gcloud services enable --project="$PROJECT" "${APIS[@]}"
# Enabling returns before every backend answers; wait until all are listed as enabled.
for _ in $(seq 1 30); do
  enabled="$(gcloud services list --enabled --project="$PROJECT" --format='value(config.name)')"
  missing=0
  for api in "${APIS[@]}"; do grep -qx "$api" <<<"$enabled" || missing=1; done
  [ "$missing" = 0 ] && break
  sleep 10
done
[ "$missing" = 0 ] || { echo "APIs still not enabled after 5 minutes: re-run this script"; exit 1; }

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

ensure_account() { # name, display name
  if ! gcloud iam service-accounts describe "$1@$PROJECT.iam.gserviceaccount.com" --project="$PROJECT" >/dev/null 2>&1; then
    gcloud iam service-accounts create "$1" --project="$PROJECT" --display-name="$2"
  fi
}

log "Planner account $PLANNER_EMAIL (read-only)"
ensure_account "$PLANNER" "forecastguard planner (Cloud Build plan, read-only)"
for role in "${PLANNER_ROLES[@]}"; do
  gcloud projects add-iam-policy-binding "$PROJECT" --condition=None --quiet \
    --member="serviceAccount:$PLANNER_EMAIL" --role="$role" >/dev/null
done
gcloud storage buckets add-iam-policy-binding "gs://$STATE_BUCKET" \
  --member="serviceAccount:$PLANNER_EMAIL" --role=roles/storage.objectViewer >/dev/null
gcloud storage buckets add-iam-policy-binding "gs://$STATE_BUCKET" \
  --member="serviceAccount:$PLANNER_EMAIL" --role=roles/storage.objectCreator \
  --condition="title=plans-only,expression=resource.name.startsWith(\"projects/_/buckets/$STATE_BUCKET/objects/plans/\")" >/dev/null
gcloud artifacts repositories add-iam-policy-binding "$AR_REPO" --project="$PROJECT" \
  --location="$REGION" --member="serviceAccount:$PLANNER_EMAIL" \
  --role=roles/artifactregistry.writer >/dev/null

log "Deployer account $DEPLOYER_EMAIL"
ensure_account "$DEPLOYER" "forecastguard deployer (Cloud Build apply, approval-gated)"
if gcloud iam roles describe "$SECRET_ROLE" --project="$PROJECT" >/dev/null 2>&1; then
  gcloud iam roles update "$SECRET_ROLE" --project="$PROJECT" --quiet \
    --permissions="$(join , "${SECRET_PERMISSIONS[@]}")" >/dev/null
else
  gcloud iam roles create "$SECRET_ROLE" --project="$PROJECT" \
    --title="forecastguard secret deployer" \
    --description="Manage forecastguard's secrets and versions without reading their values" \
    --permissions="$(join , "${SECRET_PERMISSIONS[@]}")" >/dev/null
fi
for role in "${DEPLOYER_ROLES[@]}" "${DEPLOYER_ROLES_EXTRA[@]}" "projects/$PROJECT/roles/$SECRET_ROLE"; do
  gcloud projects add-iam-policy-binding "$PROJECT" --condition=None --quiet \
    --member="serviceAccount:$DEPLOYER_EMAIL" --role="$role" >/dev/null
done
grantable="$(printf "'%s'," "${GRANTABLE_ROLES[@]}")"
gcloud projects add-iam-policy-binding "$PROJECT" --quiet \
  --member="serviceAccount:$DEPLOYER_EMAIL" --role=roles/resourcemanager.projectIamAdmin \
  --condition="^:^title=forecastguard-roles-only:expression=api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([${grantable%,}])" >/dev/null

log "Who may approve and who may plan"
CALLER="$(gcloud config get-value account 2>/dev/null)"
case "$CALLER" in
  "") caller_member="" ;;
  *.gserviceaccount.com) caller_member="serviceAccount:$CALLER" ;;
  *) caller_member="user:$CALLER" ;;
esac
IFS=, read -r -a approvers <<<"${APPROVERS:-$caller_member}"
for member in "${approvers[@]}"; do
  [ -n "$member" ] || continue
  gcloud projects add-iam-policy-binding "$PROJECT" --condition=None --quiet \
    --member="$member" --role=roles/cloudbuild.builds.approver >/dev/null
done
# You may submit plan builds (they run as the planner); not builds as the deployer.
if [ -n "$caller_member" ]; then
  gcloud iam service-accounts add-iam-policy-binding "$PLANNER_EMAIL" --project="$PROJECT" \
    --member="$caller_member" --role=roles/iam.serviceAccountUser --quiet >/dev/null
fi

if [ -n "${GITHUB_OWNER:-}" ] && [ -n "${GITHUB_REPO:-}" ]; then
  log "Cloud Build triggers on github.com/$GITHUB_OWNER/$GITHUB_REPO"
  gcloud builds triggers describe forecastguard-plan --project="$PROJECT" --region="$REGION" >/dev/null 2>&1 ||
    gcloud builds triggers create github --name=forecastguard-plan --project="$PROJECT" \
      --region="$REGION" --repo-owner="$GITHUB_OWNER" --repo-name="$GITHUB_REPO" \
      --branch-pattern='^main$' --build-config=cloudbuild.yaml \
      --service-account="projects/$PROJECT/serviceAccounts/$PLANNER_EMAIL" \
      --substitutions="_TF_STATE_BUCKET=$STATE_BUCKET,_REGION=$REGION"
  gcloud builds triggers describe forecastguard-apply --project="$PROJECT" --region="$REGION" >/dev/null 2>&1 ||
    gcloud builds triggers create manual --name=forecastguard-apply --project="$PROJECT" \
      --region="$REGION" --repo="https://github.com/$GITHUB_OWNER/$GITHUB_REPO" \
      --repo-type=GITHUB --branch=main --build-config=cloudbuild-apply.yaml \
      --service-account="projects/$PROJECT/serviceAccounts/$DEPLOYER_EMAIL" \
      --require-approval \
      --substitutions="_TF_STATE_BUCKET=$STATE_BUCKET,_REGION=$REGION,_PLAN_BUILD_ID=,_FIRST_TRAINING=auto"
fi

log "Done. Plan (read-only), review gs://$STATE_BUCKET/plans/<build id>/plan.txt, then apply it:"
echo "  gcloud builds submit --project=$PROJECT --region=$REGION --config cloudbuild.yaml \\"
echo "    --substitutions=_TF_STATE_BUCKET=$STATE_BUCKET,_REGION=$REGION"
echo "  gcloud builds triggers run forecastguard-apply --project=$PROJECT --region=$REGION \\"
echo "    --branch=main --substitutions=_PLAN_BUILD_ID=<plan build id>"

#!/usr/bin/env bash
# Give the Pub/Sub subscriptions that Eventarc created for the event-driven functions a
# dead-letter policy. Terraform cannot: google_cloudfunctions2_function does not expose
# the subscription (hashicorp/terraform-provider-google#25069). Idempotent; run it after
# every `terraform apply` (cloudbuild.yaml does).
#
# usage: terraform/scripts/attach_dead_letters.sh PROJECT REGION DEAD_LETTER_TOPIC MAX_ATTEMPTS TRIGGER...
#   TRIGGER: an Eventarc trigger name, as in `terraform output -json eventarc_triggers`
set -euo pipefail

if [[ $# -lt 5 ]]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
project=$1 region=$2 dead_letter_topic=$3 max_attempts=$4
shift 4

number=$(gcloud projects describe "$project" --format='value(projectNumber)')
pubsub_agent="serviceAccount:service-${number}@gcp-sa-pubsub.iam.gserviceaccount.com"

for trigger in "$@"; do
  trigger=${trigger##*/}
  subscription=$(gcloud eventarc triggers describe "$trigger" --project="$project" \
    --location="$region" --format='value(transport.pubsub.subscription)')
  if [[ -z $subscription ]]; then
    echo "trigger $trigger has no Pub/Sub subscription" >&2
    exit 1
  fi
  echo "dead letters of $trigger: $subscription -> $dead_letter_topic (after $max_attempts attempts)"
  gcloud pubsub subscriptions update "$subscription" --project="$project" \
    --dead-letter-topic="$dead_letter_topic" --max-delivery-attempts="$max_attempts" \
    --min-retry-delay=10s --max-retry-delay=600s --quiet
  # Pub/Sub acknowledges the forwarded message on the source subscription as its agent.
  gcloud pubsub subscriptions add-iam-policy-binding "$subscription" --project="$project" \
    --member="$pubsub_agent" --role=roles/pubsub.subscriber --quiet >/dev/null
done

# Topics: scheduler -> health-check-requests -> health_pubsub; health -> retrain-requests ->
# train_trigger. Messages an event-driven function keeps failing on end on the dead-letter
# topic, whose pull subscription keeps them for people to inspect and replay.

resource "google_pubsub_topic" "health" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; messages carry only an optional date and window length, no customer data.
  project = var.project_id
  name    = var.health_topic_name

  depends_on = [time_sleep.apis]
}

resource "google_pubsub_topic" "retrain" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; messages carry ids, dates and a reason string, no customer data.
  project = var.project_id
  name    = var.retrain_topic_name

  depends_on = [time_sleep.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; holds copies of the two topics' messages only.
  project = var.project_id
  name    = var.dead_letter_topic_name

  depends_on = [time_sleep.apis]
}

resource "google_pubsub_subscription" "dead_letter" {
  project = var.project_id
  name    = "${var.dead_letter_topic_name}-keep"
  topic   = google_pubsub_topic.dead_letter.id

  message_retention_duration = var.dead_letter_retention
  retain_acked_messages      = true
  ack_deadline_seconds       = 60

  # Never expire for inactivity: dead letters are pulled by people, rarely.
  expiration_policy {
    ttl = ""
  }
}

# The event-driven functions' deliveries: ordinary push subscriptions this module owns
# (instead of Eventarc's output-only ones), so the retry policy, the dead-letter topic and
# the ack deadline are Terraform's and drift shows in the plan.
#
# Pub/Sub POSTs {"message": {...}, "subscription": ...} to the function's URL with an OIDC
# token of the "events" account (audience: the URL; Cloud Run checks it and the account's
# invoker role). A non-2xx answer or a timeout (the ack deadline, set to the function's
# timeout) is retried with exponential backoff; after max_delivery_attempts the message goes
# to the dead-letter topic. The URL path names the topic, so the CloudEvent functions-framework
# builds keeps its source (//pubsub.googleapis.com/projects/P/topics/T).
locals {
  push_subscriptions = {
    health_pubsub = {
      topic    = google_pubsub_topic.health
      function = google_cloudfunctions2_function.health_pubsub
      timeout  = var.health_timeout_s
    }
    train_trigger = {
      topic    = google_pubsub_topic.retrain
      function = google_cloudfunctions2_function.train_trigger
      timeout  = var.train_trigger_timeout_s
    }
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = local.push_subscriptions

  project = var.project_id
  name    = "${local.function_names[each.key]}-push"
  topic   = each.value.topic.id

  # Pub/Sub allows 10-600 s; a push is acknowledged when the function answers.
  ack_deadline_seconds       = min(600, max(10, each.value.timeout))
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${each.value.function.service_config[0].uri}/${each.value.topic.id}"

    oidc_token {
      service_account_email = google_service_account.component["events"].email
      audience              = each.value.function.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = var.push_min_backoff
    maximum_backoff = var.push_max_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # Never expire for inactivity (a quiet month must not delete the delivery path).
  expiration_policy {
    ttl = ""
  }

  # The events account may invoke the function, and the Pub/Sub agent may sign its tokens,
  # before the first push.
  depends_on = [
    google_cloud_run_service_iam_member.events_invoke,
    time_sleep.iam_propagation,
  ]
}

# Topics: scheduler -> health-check-requests -> health; health -> retrain-requests ->
# train_trigger. Messages an event-driven function keeps failing on end on the dead-letter
# topic, whose pull subscription keeps them for people to inspect and replay.

resource "google_pubsub_topic" "health" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; messages carry only an optional date, no customer data.
  project = var.project_id
  name    = var.health_topic_name

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "retrain" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; messages carry ids, dates and a reason string, no customer data.
  project = var.project_id
  name    = var.retrain_topic_name

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; holds copies of the two topics' messages only.
  project = var.project_id
  name    = var.dead_letter_topic_name

  depends_on = [google_project_service.apis]
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

# Every variable has a description and a type. Defaults mirror forecastguard.config.Settings.

# --- Project -------------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project that hosts forecastguard."
  type        = string
}

variable "region" {
  description = "Region for the functions, the Cloud Run job, the scheduler, the bucket and Cloud SQL."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (service accounts, functions, job, secrets)."
  type        = string
  default     = "forecastguard"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*[a-z0-9]$", var.name_prefix)) && length("${var.name_prefix}-train-trigger") <= 30
    error_message = "name_prefix must be lowercase letters, digits or dashes, start with a letter, end with a letter or digit, and be at most 16 characters: the longest service account id it makes, <name_prefix>-train-trigger, must fit in 30."
  }

  validation {
    condition     = length("${var.project_id}-${var.name_prefix}-function-sources") <= 63
    error_message = "<project_id>-<name_prefix>-function-sources (the function source bucket) must fit in 63 characters: shorten name_prefix."
  }
}

variable "labels" {
  description = "Extra labels put on every resource that takes labels."
  type        = map(string)
  default     = {}
}

# --- Pub/Sub -------------------------------------------------------------------------------

variable "health_topic_name" {
  description = "Topic the scheduler publishes health-check requests to (the health function's trigger)."
  type        = string
  default     = "health-check-requests"
}

variable "retrain_topic_name" {
  description = "Topic the health function publishes retrain requests to (train_trigger's trigger)."
  type        = string
  default     = "retrain-requests"
}

variable "dead_letter_topic_name" {
  description = "Topic that receives messages the event-driven functions failed on max_delivery_attempts times."
  type        = string
  default     = "forecastguard-dead-letters"
}

variable "max_delivery_attempts" {
  description = "Deliveries of one message before it is moved to the dead-letter topic (Pub/Sub allows 5-100)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100."
  }
}

variable "dead_letter_retention" {
  description = "How long the dead-letter subscription keeps unacknowledged messages (at most 31 days)."
  type        = string
  default     = "2678400s"
}

# --- Schedules -----------------------------------------------------------------------------

variable "health_check_schedule" {
  description = "Cron expression of the daily health check."
  type        = string
  default     = "0 6 * * *"
}

variable "forecast_schedule" {
  description = "Cron expression of the daily forecast-only run of the trainer job."
  type        = string
  default     = "0 4 * * *"
}

variable "schedule_time_zone" {
  description = "Time zone of both cron expressions."
  type        = string
  default     = "Etc/UTC"
}

# --- Cloud Functions -----------------------------------------------------------------------

variable "function_runtime" {
  description = "Cloud Functions runtime of the health and train_trigger functions."
  type        = string
  default     = "python311"
}

variable "staged_functions_dir" {
  description = "Folder (relative to this module) holding the staged functions: scripts/stage_functions.py writes it."
  type        = string
  default     = "../build/functions"
}

variable "function_memory" {
  description = "Memory of each function instance."
  type        = string
  default     = "1Gi"
}

variable "health_min_instances" {
  description = "Minimum instances of the health functions (HTTP and Pub/Sub)."
  type        = number
  default     = 0
}

variable "health_max_instances" {
  description = "Maximum instances of the health functions (HTTP and Pub/Sub)."
  type        = number
  default     = 3
}

variable "health_timeout_s" {
  description = "Timeout of one health-check invocation, in seconds."
  type        = number
  default     = 540
}

variable "train_trigger_min_instances" {
  description = "Minimum instances of the train_trigger function."
  type        = number
  default     = 0
}

variable "train_trigger_max_instances" {
  description = "Maximum instances of the train_trigger function."
  type        = number
  default     = 1
}

variable "train_trigger_timeout_s" {
  description = "Timeout of one train_trigger invocation, in seconds."
  type        = number
  default     = 120
}

variable "health_http_public" {
  description = "Let anyone reach the HTTPS /model/health endpoint at the Cloud Run IAM layer (the function then still demands the HEALTH_API_TOKEN bearer or an allowed caller's ID token). Default false: only health_callers may invoke it."
  type        = bool
  default     = false
}

variable "health_callers" {
  description = "Emails of the people or service accounts allowed to call /model/health with a Google ID token: they get the invoker role on the endpoint and are listed in HEALTH_ALLOWED_CALLERS. (The daily check goes through Pub/Sub: the scheduler needs no entry.)"
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.health_callers : can(regex("^[^@\\s:]+@[^@\\s:]+$", email))])
    error_message = "health_callers are plain emails (ops@example.com), without a user: or serviceAccount: prefix."
  }
}

# --- Trainer (Cloud Run job) ---------------------------------------------------------------

variable "trainer_image" {
  description = "Trainer image, also the migration job's (cloudbuild.yaml always passes the pushed digest). The default, Google's public sample job, only lets a plan be made without an image: the migration job cannot run with it."
  type        = string
  default     = "us-docker.pkg.dev/cloudrun/container/job:latest"
}

variable "trainer_cpu" {
  description = "CPU limit of the trainer container."
  type        = string
  default     = "4"
}

variable "trainer_memory" {
  description = "Memory limit of the trainer container."
  type        = string
  default     = "16Gi"
}

variable "trainer_timeout_s" {
  description = "Timeout of one trainer task, in seconds (train_trigger's TRAINER_TIMEOUT_S is this times the number of attempts)."
  type        = number
  default     = 21600
}

variable "trainer_max_retries" {
  description = "Retries of a failed trainer task."
  type        = number
  default     = 1
}

variable "trainer_task_count" {
  description = "Tasks per trainer execution; null means 4 when the module creates the Optuna database (a shared study, OPTUNA_STORAGE) and 1 otherwise. Task 0 trains and reports; the others only add tuning trials to the shared study."
  type        = number
  default     = null

  validation {
    condition     = var.trainer_task_count == null ? true : var.trainer_task_count >= 1
    error_message = "trainer_task_count must be at least 1."
  }
}

variable "catalogue_products" {
  description = "About how many products the catalogue holds (issue 26): with trainer_partition_size it sets the trainer job's task count, one task per partition up to trainer_max_tasks."
  type        = number
  default     = 1000

  validation {
    condition     = var.catalogue_products >= 1
    error_message = "catalogue_products must be at least 1."
  }
}

variable "trainer_partition_size" {
  description = "Products per partition of the catalogue (TRAIN_PARTITION_SIZE, issue 26): one model each, the job's tasks share the partitions. The default keeps catalogues up to 5,000 products one model, as before."
  type        = number
  default     = 5000

  validation {
    condition     = var.trainer_partition_size >= 1
    error_message = "trainer_partition_size must be at least 1."
  }
}

variable "trainer_max_tasks" {
  description = "Cap on the trainer job's tasks derived from catalogue_products / trainer_partition_size (Cloud Run allows 10,000 a job); more partitions than tasks: each task trains several."
  type        = number
  default     = 100

  validation {
    condition     = var.trainer_max_tasks >= 1 && var.trainer_max_tasks <= 10000
    error_message = "trainer_max_tasks must be between 1 and 10000."
  }
}

variable "optuna_db_name" {
  description = "Database of the shared Optuna study on the Cloud SQL instance (its own database: Optuna and forecastguard's migrations both use a table named alembic_version)."
  type        = string
  default     = "forecastguard_optuna"
}

variable "artifact_registry_repository_id" {
  description = "Artifact Registry Docker repository for the trainer image."
  type        = string
  default     = "forecastguard"
}

# --- Artifacts -----------------------------------------------------------------------------

variable "artifact_bucket_name" {
  description = "Name of the artifact bucket; null means \"<project_id>-<name_prefix>-artifacts\"."
  type        = string
  default     = null
}

variable "artifact_prefix" {
  description = "Object prefix of the artifacts inside the bucket (ARTIFACT_URI is gs://bucket/prefix)."
  type        = string
  default     = "forecastguard"
}

variable "run_coldline_after_days" {
  description = "Age in days after which a run's artifacts (<prefix>/runs/...) move to COLDLINE storage."
  type        = number
  default     = 90
}

variable "run_delete_after_days" {
  description = "Age in days after which a run's artifacts are deleted; null keeps them (the champion's run must outlive this)."
  type        = number
  default     = null
}

variable "noncurrent_version_retention_days" {
  description = "Days an overwritten or deleted object version is kept in the versioned buckets."
  type        = number
  default     = 30
}

variable "force_destroy_buckets" {
  description = "Allow terraform destroy to delete non-empty buckets (artifacts, function sources)."
  type        = bool
  default     = false
}

# --- Cloud SQL -----------------------------------------------------------------------------

variable "create_sql_instance" {
  description = "Create a Cloud SQL MySQL instance, database and user; false uses existing_sql_instance."
  type        = bool
  default     = true
}

variable "existing_sql_instance" {
  description = "Connection name (project:region:instance) of an existing Cloud SQL MySQL instance, used when create_sql_instance is false."
  type        = string
  default     = ""

  validation {
    condition     = var.existing_sql_instance == "" || can(regex("^[^:]+:[^:]+:[^:]+$", var.existing_sql_instance))
    error_message = "existing_sql_instance must be a connection name: project:region:instance."
  }
}

variable "sql_instance_name" {
  description = "Name of the Cloud SQL instance created when create_sql_instance is true."
  type        = string
  default     = "forecastguard"
}

variable "sql_database_version" {
  description = "MySQL version of the created instance."
  type        = string
  default     = "MYSQL_8_0"
}

variable "sql_tier" {
  description = "Machine tier of the created instance."
  type        = string
  default     = "db-custom-1-3840"
}

variable "sql_availability_type" {
  description = "ZONAL or REGIONAL (high availability) for the created instance."
  type        = string
  default     = "ZONAL"
}

variable "sql_deletion_protection" {
  description = "Protect the created instance from deletion (by Terraform and by the API)."
  type        = bool
  default     = true
}

variable "db_name" {
  description = "Database name (DB_NAME)."
  type        = string
  default     = "forecastguard"
}

variable "db_user" {
  description = "Database user (DB_USER) for password authentication; Terraform generates its password (write-only, never in the state) into the db-pass secret."
  type        = string
  default     = "forecastguard"
}

variable "sql_private_ip" {
  description = "Give the Cloud SQL instance a private address only (organisations enforcing sql.restrictPublicIp): private services access on a VPC, a Serverless VPC Access connector for the functions and jobs, DB_IP_TYPE=PRIVATE. Default false: public address, no authorised network (only the Cloud SQL connector reaches it)."
  type        = bool
  default     = false
}

variable "vpc_network" {
  description = "Name of an existing VPC network for sql_private_ip (required with existing_sql_instance: the network of its private address); empty creates <name_prefix>-vpc."
  type        = string
  default     = ""
}

variable "vpc_connector_cidr" {
  description = "Unused /28 range of the VPC for the Serverless VPC Access connector (sql_private_ip)."
  type        = string
  default     = "10.8.0.0/28"

  validation {
    condition     = can(cidrhost(var.vpc_connector_cidr, 0)) && endswith(var.vpc_connector_cidr, "/28")
    error_message = "vpc_connector_cidr must be a /28 range, e.g. 10.8.0.0/28."
  }
}

variable "db_iam_auth" {
  description = "Use Cloud SQL IAM database authentication (DB_IAM_AUTH): each component logs in as its own service account and no password exists."
  type        = bool
  default     = false
}

# --- Health-check settings (forecastguard.config.Settings) ---------------------------------

variable "rmse_threshold" {
  description = "RMSE_THRESHOLD: average RMSE above which the model is unhealthy."
  type        = number
  default     = 18.0
}

variable "window_days" {
  description = "WINDOW_DAYS: days of sales compared with forecasts per check."
  type        = number
  default     = 30
}

variable "fdr_alpha" {
  description = "FDR_ALPHA: false-discovery rate of the per-product drift tests."
  type        = number
  default     = 0.05
}

variable "min_samples" {
  description = "MIN_SAMPLES: fewest paired days for a product to be tested."
  type        = number
  default     = 7
}

variable "stale_days" {
  description = "STALE_DAYS: days without sales or forecasts after which the data is stale."
  type        = number
  default     = 3
}

variable "data_drift_unhealthy" {
  description = "DATA_DRIFT_UNHEALTHY: whether significant drift alone makes the model unhealthy."
  type        = bool
  default     = false
}

variable "min_drift_effect" {
  description = "MIN_DRIFT_EFFECT: smallest drift that counts (an interval null: level shift in reference standard deviations, spread ratio beyond 1 + 2 x this); 0 turns the minimum off."
  type        = number
  default     = 0.25

  validation {
    condition     = var.min_drift_effect >= 0
    error_message = "min_drift_effect must be 0 or more."
  }
}

# --- Trainer settings ----------------------------------------------------------------------

variable "holiday_country" {
  description = "HOLIDAY_COUNTRY: country code of the holiday calendar used as a feature."
  type        = string
  default     = "IT"
}

variable "smtp_host" {
  description = "SMTP_HOST of the report email."
  type        = string
  default     = "smtp.gmail.com"
}

variable "smtp_port" {
  description = "SMTP_PORT of the report email."
  type        = number
  default     = 587
}

variable "smtp_password_secret" {
  description = "Secret Manager secret id (in this project) holding the SMTP password, created and given a version by a person (only a person has it). Empty: the trainer sends no email and says so in its log and run record."
  type        = string
  default     = ""
}

variable "smtp_user" {
  description = "SMTP_USER of the report email (its password is the smtp_password_secret secret)."
  type        = string
  default     = ""
}

variable "smtp_starttls" {
  description = "SMTP_STARTTLS: upgrade the SMTP connection with STARTTLS."
  type        = bool
  default     = true
}

variable "report_from" {
  description = "REPORT_FROM: sender address of the report email."
  type        = string
  default     = ""
}

variable "report_recipients" {
  description = "REPORT_RECIPIENTS: addresses that receive the report email."
  type        = list(string)
  default     = []
}

variable "log_level" {
  description = "LOG_LEVEL of every component."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], var.log_level)
    error_message = "log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL."
  }
}

# --- Monitoring ----------------------------------------------------------------------------

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) told when the model is unhealthy."
  type        = list(string)
  default     = []
}

# --- Deployment ----------------------------------------------------------------------------

variable "deployer_service_account" {
  description = "Email of the account that applies this module (the Cloud Build account scripts/bootstrap.sh creates). It gets Service Account User on each component account only, instead of project-wide. Empty when a person applies with their own rights."
  type        = string
  default     = ""
}

variable "iam_propagation_wait" {
  description = "Wait after the IAM grants before deploying what uses them (Google: changes usually propagate within 2 minutes, up to 7)."
  type        = string
  default     = "120s"
}

variable "migration_token" {
  description = "Suffix of the migration job's execution run inside the apply (the job is ready only once `forecastguard db upgrade` succeeded); cloudbuild.yaml passes the plan build's id. Empty: the apply runs no migration (plans made by hand)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z0-9][a-z0-9-]{0,35})?$", var.migration_token))
    error_message = "migration_token must be lowercase letters, digits and dashes, at most 36 characters."
  }
}

variable "api_enable_wait" {
  description = "Wait after enabling the module's APIs before creating what uses them (scripts/bootstrap.sh enables them beforehand, so this only matters when an API is first enabled by Terraform)."
  type        = string
  default     = "60s"
}

variable "metric_descriptor_wait" {
  description = "Wait after creating the custom metric descriptors before the alert policy and dashboard that name them (they are refused with 404 \"Cannot find metric(s)\" for up to about 10 minutes)."
  type        = string
  default     = "600s"
}

variable "secret_generation" {
  description = "Generation of the generated secrets (API token, database password, Optuna URL): increase it to rotate them; the new values are written straight to Secret Manager and the SQL user (write-only, never in the state)."
  type        = number
  default     = 1
}

variable "push_min_backoff" {
  description = "Shortest wait before Pub/Sub redelivers a message a function failed on."
  type        = string
  default     = "10s"
}

variable "push_max_backoff" {
  description = "Longest wait before Pub/Sub redelivers a message a function failed on (at most 600s)."
  type        = string
  default     = "600s"
}

# --- the health check at scale (issue 24): BigQuery + Dataflow, off by default -----------

variable "scale_enabled" {
  description = "Create the scale path: the BigQuery dataset and tables, the Dataflow worker account, the Flex Template spec, the scheduled check's hand-over to Dataflow and its alert (docs/scale.md). Off: a small installation (Cloud SQL only, the check in-process)."
  type        = bool
  default     = false
}

variable "scale_data_plane" {
  description = "With scale_enabled, where the sales and forecasts the check reads live: \"bigquery\" (a BigQuery installation: the scheduled check always runs on Dataflow; the trainer writes its forecasts there too) or \"cloudsql\" (the check runs in the function up to health_max_inprocess_products products, on Dataflow reading Cloud SQL above)."
  type        = string
  default     = "bigquery"

  validation {
    condition     = contains(["bigquery", "cloudsql"], var.scale_data_plane)
    error_message = "scale_data_plane must be \"bigquery\" or \"cloudsql\"."
  }
}

variable "health_max_inprocess_products" {
  description = "With scale_enabled and scale_data_plane = \"cloudsql\": the scheduled check runs in the function up to this many products in its window, on Dataflow above (HEALTH_MAX_INPROCESS_PRODUCTS; 0: never by size). docs/scale.md measures the crossover."
  type        = number
  default     = 50000

  validation {
    condition     = var.health_max_inprocess_products >= 0 && floor(var.health_max_inprocess_products) == var.health_max_inprocess_products
    error_message = "health_max_inprocess_products must be a whole number >= 0."
  }
}

variable "health_beam_image" {
  description = "The health check's Flex Template image by digest (REGION-docker.pkg.dev/PROJECT/REPO/health-beam@sha256:...), set by the plan build (cloudbuild.yaml) with scale_enabled: the template spec Terraform writes names exactly this image."
  type        = string
  default     = ""

  validation {
    condition     = var.health_beam_image == "" || can(regex("^[a-z0-9.-]+/[^@\\s]+@sha256:[0-9a-f]{64}$", var.health_beam_image))
    error_message = "health_beam_image must be an image by digest (...@sha256:<64 hex>), or empty without scale_enabled."
  }
}

variable "bigquery_dataset_id" {
  description = "BigQuery dataset of sales, predictions, holdout errors and per-product check results."
  type        = string
  default     = "forecastguard"
}

variable "bigquery_location" {
  description = "Location of the BigQuery dataset (a region, or US/EU). Empty: the deployment's region, where the Dataflow jobs run (a dataset elsewhere makes every check read across regions)."
  type        = string
  default     = ""
}

variable "bigquery_deletion_protection" {
  description = "Refuse to destroy the BigQuery tables (they hold the sales history)."
  type        = bool
  default     = true
}

variable "dataflow_max_workers" {
  description = "Upper bound of Dataflow's autoscaling for the daily check."
  type        = number
  default     = 4
}

variable "dataflow_machine_type" {
  description = "Dataflow worker machine type (docs/benchmarks.md sizes the check on n1-standard-4)."
  type        = string
  default     = "n1-standard-4"
}

variable "dataflow_max_minutes" {
  description = "Alert when the daily Dataflow check runs longer than this (late)."
  type        = number
  default     = 30
}

# Private IP for Cloud SQL (var.sql_private_ip), for organisations that enforce
# constraints/sql.restrictPublicIp: the instance gets an address in a VPC (private services
# access: a reserved range peered with Google's service producer network) and no public
# one; the functions and the jobs reach that VPC through a Serverless VPC Access connector
# (private ranges only: Google APIs stay on their usual path), and every component's
# connector uses the private address (DB_IP_TYPE=PRIVATE, forecastguard.db.engine).
#
# The VPC is created here (<prefix>-vpc) unless var.vpc_network names one you have (an
# existing instance must already have its private address in that network).

locals {
  vpc_network_name = var.vpc_network != "" ? var.vpc_network : "${var.name_prefix}-vpc"
  vpc_network_id   = "projects/${var.project_id}/global/networks/${local.vpc_network_name}"
  # The connector the functions and jobs use, or null with public IP.
  vpc_connector = var.sql_private_ip ? google_vpc_access_connector.serverless[0].id : null
}

resource "google_compute_network" "vpc" {
  count = var.sql_private_ip && var.vpc_network == "" ? 1 : 0

  project                 = var.project_id
  name                    = local.vpc_network_name
  auto_create_subnetworks = false

  depends_on = [time_sleep.apis]
}

# Private services access: the range Cloud SQL's private addresses come from.
resource "google_compute_global_address" "sql_private_range" {
  count = var.sql_private_ip && var.create_sql_instance ? 1 : 0

  project       = var.project_id
  name          = "${var.name_prefix}-sql-range"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = local.vpc_network_id

  depends_on = [google_compute_network.vpc]
}

resource "google_service_networking_connection" "sql" {
  count = var.sql_private_ip && var.create_sql_instance ? 1 : 0

  network                 = local.vpc_network_id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.sql_private_range[0].name]
}

resource "google_vpc_access_connector" "serverless" {
  count = var.sql_private_ip ? 1 : 0

  project       = var.project_id
  region        = var.region
  name          = "${var.name_prefix}-sql"
  network       = local.vpc_network_name
  ip_cidr_range = var.vpc_connector_cidr
  min_instances = 2
  max_instances = 3

  lifecycle {
    precondition {
      condition     = var.create_sql_instance || var.vpc_network != ""
      error_message = "With sql_private_ip and an existing instance, set vpc_network to the network its private address is in."
    }
  }

  depends_on = [google_compute_network.vpc, time_sleep.apis]
}

# Nothing enters the VPC from outside it: the connector's own rules (Serverless VPC Access
# creates them, at a higher priority) and replies to its connections are all it carries.
# Explicit, so the rule is visible and logged rather than the implied one.
resource "google_compute_firewall" "deny_ingress" {
  count = var.sql_private_ip && var.vpc_network == "" ? 1 : 0

  project       = var.project_id
  name          = "${local.vpc_network_name}-deny-ingress"
  network       = google_compute_network.vpc[0].name
  direction     = "INGRESS"
  priority      = 65534
  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

"""The forecastguard health check as an Apache Beam pipeline (issue 24)."""

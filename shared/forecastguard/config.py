"""Settings: read once, at one boundary, from the environment (DESIGN.md §4).

`Settings.from_env()` is the only place that reads `os.environ`; everything else takes a
`Settings` (or plain arguments). A flag overrides its variable: pass it as a keyword
override. A malformed value fails fast with a `ConfigError` that names the variable.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


def _text(name: str, raw: str) -> str:
    return raw.strip()


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false, yes/no), got {raw!r}")


def _number(kind: type, *, low: float | None = None, high: float | None = None, strict=False):
    def parse(name: str, raw: str):
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
        if value != value:  # NaN
            raise ConfigError(f"{name} must be a number, got {raw!r}")
        if low is not None and (value <= low if strict else value < low):
            bound = f"> {low}" if strict else f">= {low}"
            raise ConfigError(f"{name} must be {bound}, got {raw!r}")
        if high is not None and (value >= high if strict else value > high):
            bound = f"< {high}" if strict else f"<= {high}"
            raise ConfigError(f"{name} must be {bound}, got {raw!r}")
        return value

    return parse


def _list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.replace(";", ",").split(",") if part.strip())


def _emails(name: str, raw: str) -> tuple[str, ...]:
    emails = tuple(e.lower() for e in _list(name, raw))
    bad = [e for e in emails if e.count("@") != 1 or e.startswith("@") or e.endswith("@")]
    if bad:
        raise ConfigError(
            f"{name} must be comma-separated email addresses (service accounts or users), "
            f"got {', '.join(map(repr, bad))}"
        )
    return emails


def _argv(name: str, raw: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise ConfigError(
            f"{name} must be a shell-style command line, got {raw!r}: {exc}"
        ) from None


def _choice(*choices: str):
    def parse(name: str, raw: str) -> str:
        value = raw.strip().upper()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


_BIGQUERY_URL = re.compile(r"bigquery://[a-z][a-z0-9-]{4,28}[a-z0-9]/[A-Za-z0-9_]{1,1024}")


def _bigquery_url(name: str, raw: str) -> str:
    value = raw.strip()
    if not _BIGQUERY_URL.fullmatch(value):
        raise ConfigError(f"{name} must be bigquery://PROJECT/DATASET, got {raw!r}")
    return value


def _gcs_path(name: str, raw: str) -> str:
    value = raw.strip()
    if not value.startswith("gs://") or len(value) <= len("gs://"):
        raise ConfigError(f"{name} must be a gs://BUCKET/PATH address, got {raw!r}")
    return value


def _setting(env: str, default: Any = None, parse: Callable[[str, str], Any] = _text) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse})


@dataclass(frozen=True)
class Settings:
    """Every setting forecastguard reads, with its environment variable and default."""

    # Database: a SQLAlchemy URL, or Cloud SQL through the connector when it is unset.
    database_url: str | None = _setting("DATABASE_URL")
    cloud_sql_instance: str | None = _setting("CLOUD_SQL_INSTANCE")
    db_user: str | None = _setting("DB_USER")
    db_pass: str | None = _setting("DB_PASS")
    db_name: str | None = _setting("DB_NAME")
    db_iam_auth: bool = _setting("DB_IAM_AUTH", False, _bool)
    # Which address of the Cloud SQL instance the connector uses: PUBLIC, PRIVATE (a VPC
    # route from the function or job: Terraform's sql_private_ip) or PSC.
    db_ip_type: str = _setting("DB_IP_TYPE", "PUBLIC", _choice("PUBLIC", "PRIVATE", "PSC"))
    # Database timeouts (seconds): a stalled connection fails instead of holding a request.
    # The statement timeout is MariaDB's max_statement_time / MySQL's max_execution_time
    # (SELECTs) and SQLite's busy timeout; 0 turns it off.
    db_connect_timeout_s: int = _setting("DB_CONNECT_TIMEOUT_S", 5, _number(int, low=1))
    db_read_timeout_s: int = _setting("DB_READ_TIMEOUT_S", 30, _number(int, low=1))
    db_write_timeout_s: int = _setting("DB_WRITE_TIMEOUT_S", 30, _number(int, low=1))
    db_statement_timeout_s: float = _setting("DB_STATEMENT_TIMEOUT_S", 25.0, _number(float, low=0))
    # Google Cloud and the local adapters.
    gcp_project: str | None = _setting("GCP_PROJECT")
    artifact_uri: str | None = _setting("ARTIFACT_URI")
    metrics_sink: str | None = _setting("METRICS_SINK")
    retrain_topic: str | None = _setting("RETRAIN_TOPIC")
    trainer_job: str | None = _setting("TRAINER_JOB")
    trainer_timeout_s: int = _setting("TRAINER_TIMEOUT_S", 6 * 3600, _number(int, low=1))
    # TRAINER_JOB=local: the command run as a subprocess (default: python -m trainer
    # --mode train) and the folder of its log files (default: a temporary folder).
    trainer_command: tuple[str, ...] = _setting("TRAINER_COMMAND", (), _argv)
    trainer_log_dir: str | None = _setting("TRAINER_LOG_DIR")
    # Issue 24, the check at scale (docs/scale.md): the BigQuery data plane
    # (bigquery://PROJECT/DATASET, as load-sales spells it) and the Dataflow hand-over of
    # the scheduled check: with DATAFLOW_TEMPLATE (the Flex Template spec, gs://...) a
    # check above HEALTH_MAX_INPROCESS_PRODUCTS products (0: by size never), or any
    # check of a BigQuery installation, is launched on Dataflow instead of run here.
    bigquery_url: str | None = _setting("BIGQUERY_URL", None, _bigquery_url)
    dataflow_template: str | None = _setting("DATAFLOW_TEMPLATE", None, _gcs_path)
    dataflow_region: str | None = _setting("DATAFLOW_REGION")
    dataflow_service_account: str | None = _setting("DATAFLOW_SERVICE_ACCOUNT")
    dataflow_temp_location: str | None = _setting("DATAFLOW_TEMP_LOCATION", None, _gcs_path)
    db_pass_secret: str | None = _setting("DB_PASS_SECRET")
    health_max_inprocess_products: int = _setting(
        "HEALTH_MAX_INPROCESS_PRODUCTS", 50_000, _number(int, low=0)
    )
    # The /model/health endpoint.
    health_api_token: str | None = _setting("HEALTH_API_TOKEN")
    health_audience: str | None = _setting("HEALTH_AUDIENCE")
    # Who may call with a Google ID token: service-account or user emails (verified).
    health_allowed_callers: tuple[str, ...] = _setting("HEALTH_ALLOWED_CALLERS", (), _emails)
    allow_unauthenticated: bool = _setting("ALLOW_UNAUTHENTICATED", False, _bool)
    # The health check.
    rmse_threshold: float = _setting("RMSE_THRESHOLD", 18.0, _number(float, low=0, strict=True))
    window_days: int = _setting("WINDOW_DAYS", 30, _number(int, low=1, high=366))
    fdr_alpha: float = _setting("FDR_ALPHA", 0.05, _number(float, low=0, high=1, strict=True))
    min_samples: int = _setting("MIN_SAMPLES", 7, _number(int, low=2))
    stale_days: int = _setting("STALE_DAYS", 3, _number(int, low=0))
    data_drift_unhealthy: bool = _setting("DATA_DRIFT_UNHEALTHY", False, _bool)
    # A drift must also be big enough: level shift in reference sd, spread ratio beyond
    # 1 + 2 x this, as an interval null (issues 13 and 23, docs/health.md: 0.25 with a 90-day
    # reference meets the power goals, 0.5 does not); 0 turns the minimum off.
    min_drift_effect: float = _setting("MIN_DRIFT_EFFECT", 0.25, _number(float, low=0))
    # Issue 23: the days before the window whose served errors are the drift reference
    # (0: the window's length; a product with less history uses what it has;
    # docs/health.md measures 30, 90 and 180).
    reference_days: int = _setting("REFERENCE_DAYS", 90, _number(int, low=0, high=366))
    # Issue 23: after a retrain asked for the served model produced a rejected challenger,
    # a drift that persists asks again only when something new happens or after this many
    # days, doubled with each rejected challenger (forecastguard.health.backoff); 0: off.
    retrain_backoff_days: int = _setting("RETRAIN_BACKOFF_DAYS", 7, _number(int, low=0, high=365))
    # `forecastguard load-sales` (docs/security.md): the most units one row may hold (a
    # row above it is refused), and the largest file it reads, in bytes.
    sales_max_units: float = _setting(
        "SALES_MAX_UNITS", 1_000_000.0, _number(float, low=0, high=1e15, strict=True)
    )
    sales_max_bytes: int = _setting("SALES_MAX_BYTES", 64 * 2**20, _number(int, low=1))
    # The trainer.
    holiday_country: str = _setting("HOLIDAY_COUNTRY", "IT")
    optuna_storage: str | None = _setting("OPTUNA_STORAGE")
    # The report email.
    smtp_host: str | None = _setting("SMTP_HOST")
    smtp_port: int = _setting("SMTP_PORT", 587, _number(int, low=1, high=65535))
    smtp_user: str | None = _setting("SMTP_USER")
    smtp_password: str | None = _setting("SMTP_PASSWORD")
    smtp_starttls: bool = _setting("SMTP_STARTTLS", True, _bool)
    report_from: str | None = _setting("REPORT_FROM")
    report_recipients: tuple[str, ...] = _setting("REPORT_RECIPIENTS", (), _list)
    log_level: str = _setting(
        "LOG_LEVEL", "INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from `environ` (default: `os.environ`).

        Keyword overrides (from command-line flags) win over the environment; an override
        of None means "not given" and leaves the environment's value in place.
        """
        env = os.environ if environ is None else environ
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name, parse = f.metadata["env"], f.metadata["parse"]
            given = overrides.get(f.name)
            if given is not None:
                values[f.name] = parse(name, str(given)) if isinstance(given, str) else given
                continue
            raw = env.get(name)
            if raw is not None and raw.strip() != "":
                values[f.name] = parse(name, raw)
        return cls(**values)

    @staticmethod
    def env_names() -> dict[str, str]:
        """Map each field to its environment variable (for docs and wiring checks)."""
        return {f.name: f.metadata["env"] for f in dataclasses.fields(Settings)}

    def require(self, *names: str) -> None:
        """Fail fast, naming the variables, when any of these settings is unset."""
        env = self.env_names()
        missing = [env[n] for n in names if getattr(self, n) in (None, "", ())]
        if missing:
            raise ConfigError(f"missing setting(s): {', '.join(missing)}")

    def require_database(self) -> None:
        """Fail fast unless a database is configured (a URL or a Cloud SQL instance)."""
        if self.database_url:
            return
        if not self.cloud_sql_instance:
            raise ConfigError(
                "no database configured: set DATABASE_URL (a SQLAlchemy URL) or "
                "CLOUD_SQL_INSTANCE (project:region:instance) with DB_USER and DB_NAME"
            )
        self.require("db_user", "db_name")
        if not self.db_iam_auth:
            self.require("db_pass")

"""`python -m trainer`: the job's command line (each flag also from its environment variable).

Settings shared with the rest of forecastguard (DATABASE_URL or CLOUD_SQL_INSTANCE,
ARTIFACT_URI, OPTUNA_STORAGE, SMTP_*, REPORT_*) come from `Settings.from_env()`, a flag
overriding its variable (on Google Cloud OPTUNA_DATABASE names the study's database and
the URL is built from DB_USER and DB_PASS: one credential); the request this run serves comes from REQUEST_ID, REASON,
HEALTH_CHECK_ID, WINDOW_START, WINDOW_END (set by train_trigger); the Cloud Run task
from CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_COUNT, CLOUD_RUN_TASK_ATTEMPT.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from forecastguard.config import ConfigError, Settings
from forecastguard.logs import configure_logging, get_logger
from trainer.run.partitions import DEFAULT_PARTITION_SIZE

log = get_logger(__name__)

# Optuna's time budget: with it a training run on the pasta data (118 products x 5 years)
# stays within 10 minutes on 2 cores (docs/benchmarks.md, Trainer); 20 trials alone take
# about 17 minutes there. More trials: raise it, or run Cloud Run tasks in parallel.
DEFAULT_TUNING_TIMEOUT_S = 150.0
# Issue 26: how long a task waits for the shared tuning, and task 0 for every partition
# (the job's default task timeout, 6 h).
DEFAULT_GATHER_TIMEOUT_S = 21600.0


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {raw!r}")
    return value


def _train_config(raw: str | None, epochs: int | None, country: str) -> Any:
    """TrainConfig from a JSON object or a path to a JSON file, plus --epochs."""
    from trainer.config import ConfigError as TrainConfigError
    from trainer.config import TrainConfig

    values: dict[str, Any] = {"holiday_country": country}
    if raw:
        if raw.lstrip().startswith(("{", "[")):
            text = raw
        else:
            try:
                text = Path(raw).read_text()
            except OSError as exc:
                raise ConfigError(
                    f"TRAIN_CONFIG is neither JSON nor a readable file: {exc}"
                ) from exc
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"TRAIN_CONFIG is not a JSON object: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError("TRAIN_CONFIG must be a JSON object of TrainConfig fields")
        values.update(loaded)
    if epochs is not None:
        values["epochs"] = epochs
    try:
        return TrainConfig.from_dict(values)
    except (TrainConfigError, TypeError) as exc:
        raise ConfigError(f"TRAIN_CONFIG: {exc}") from exc


def _units(raw: str | None) -> tuple[int, ...]:
    from trainer.models.tuning import UNITS

    if not raw:
        return UNITS
    try:
        units = tuple(int(u) for u in raw.replace(";", ",").split(",") if u.strip())
    except ValueError:
        raise ConfigError(
            f"SEARCH_UNITS must be integers separated by commas, got {raw!r}"
        ) from None
    if not units or min(units) < 1:
        raise ConfigError(f"SEARCH_UNITS must list positive integers, got {raw!r}")
    return units


def default_ids(environ: Mapping[str, str], attempt: int) -> tuple[str, str]:
    """(run id, study id): the Cloud Run execution's name, or a time stamp and random
    suffix; a retried attempt gets its own run folder but resumes the same study."""
    execution = (environ.get("CLOUD_RUN_EXECUTION") or "").strip()
    base = execution or (datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6])
    run_id = f"{base}-a{attempt}" if attempt else base
    return run_id[:64], base[:60]


def optuna_url(settings: Settings, database: str) -> str:
    """The shared study's URL on the Cloud SQL instance, built from the one database
    credential (DB_USER, DB_PASS) and the instance's socket the job mounts at /cloudsql.

    On Google Cloud there is no second copy of the password (an OPTUNA_STORAGE secret)
    that could drift from the SQL user's: a rotation changes both at once.
    """
    import sqlalchemy as sa

    if not settings.cloud_sql_instance:
        raise ConfigError("OPTUNA_DATABASE needs CLOUD_SQL_INSTANCE (the study's server)")
    if settings.db_iam_auth:
        raise ConfigError(
            "OPTUNA_DATABASE needs a password login (DB_IAM_AUTH is on): set OPTUNA_STORAGE"
        )
    settings.require("db_user", "db_pass")
    url = sa.engine.URL.create(
        "mysql+pymysql",
        username=settings.db_user,
        password=settings.db_pass,
        database=database,
        query={"unix_socket": f"/cloudsql/{settings.cloud_sql_instance}"},
    )
    return url.render_as_string(hide_password=False)


def _partition_key(raw: str | None) -> str | None:
    """TRAIN_PARTITION_KEY checked at the entry point (a regex with one capturing group)."""
    from trainer.run.partitions import PartitionError, compile_key

    key = (raw or "").strip() or None
    try:
        compile_key(key)
    except PartitionError as exc:
        raise ConfigError(str(exc)) from None
    return key


def build(params: dict[str, Any], environ: Mapping[str, str]) -> tuple[Settings, Any]:
    """Settings and JobOptions from the parsed flags and the environment (pure)."""
    from trainer.judge.promotion import Tolerances
    from trainer.run.main import JobOptions, RequestInfo
    from trainer.serve.artifacts import check_run_id

    settings = Settings.from_env(
        environ,
        database_url=params.get("database_url"),
        artifact_uri=params.get("artifact_uri"),
        optuna_storage=params.get("optuna_storage"),
    )
    settings.require("artifact_uri")
    settings.require_database()
    attempt = _int_env(environ, "CLOUD_RUN_TASK_ATTEMPT", 0)
    task_index = _int_env(environ, "CLOUD_RUN_TASK_INDEX", 0)
    task_count = max(1, _int_env(environ, "CLOUD_RUN_TASK_COUNT", 1))
    run_id, study_id = default_ids(environ, attempt)
    if params.get("run_id"):
        run_id = study_id = params["run_id"]
    try:
        check_run_id(run_id)
    except ValueError as exc:
        raise ConfigError(f"RUN_ID: {exc}") from None
    storage = settings.optuna_storage
    database = (params.get("optuna_database") or "").strip()
    if database:
        if storage:
            raise ConfigError("set OPTUNA_STORAGE or OPTUNA_DATABASE, not both")
        storage = optuna_url(settings, database)
    if storage and storage == settings.database_url:
        raise ConfigError(
            "OPTUNA_STORAGE must not be DATABASE_URL: give Optuna a database of its own "
            "(the same server is fine; both schemas use Alembic's alembic_version table)"
        )
    try:
        tolerances = Tolerances(
            params["rmsse_tolerance"],
            params["disparity_tolerance"],
            tuple(params.get("coverage_bounds") or (0.75, 0.85)),
        )
    except ValueError as exc:
        raise ConfigError(f"PROMOTION_*_TOLERANCE / PROMOTION_COVERAGE_BOUNDS: {exc}") from None
    opts = JobOptions(
        mode=params["mode"],
        run_id=run_id,
        study_id=study_id,
        train_config=_train_config(
            params.get("train_config"), params.get("epochs"), settings.holiday_country
        ),
        trials=params["trials"],
        timeout_s=params.get("timeout") or None,
        optuna_storage=storage,
        task_index=task_index,
        task_count=task_count,
        attempt=attempt,
        max_retries=params["max_retries"],
        search_units=_units(params.get("search_units")),
        disparity_weight=params["disparity_weight"],
        tolerances=tolerances,
        shap_products=params["shap_products"],
        request=RequestInfo.from_env(environ),
        partition_size=params.get("partition_size") or DEFAULT_PARTITION_SIZE,
        partition_key=_partition_key(params.get("partition_key")),
        gather_timeout_s=params.get("gather_timeout") or DEFAULT_GATHER_TIMEOUT_S,
    )
    if task_index >= task_count:
        raise ConfigError(f"CLOUD_RUN_TASK_INDEX={task_index} >= CLOUD_RUN_TASK_COUNT={task_count}")
    return settings, opts


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--mode",
    type=click.Choice(["train", "forecast"]),
    envvar="TRAINER_MODE",
    default="train",
    show_default=True,
    help="Train (and promote), or forecast only.",
)
@click.option("--database-url", envvar="DATABASE_URL", help="SQLAlchemy URL (else Cloud SQL).")
@click.option("--artifact-uri", envvar="ARTIFACT_URI", help="file:///path or gs://bucket/prefix.")
@click.option("--run-id", envvar="RUN_ID", help="Run folder name (default: the execution's).")
@click.option(
    "--trials",
    envvar="TRIALS",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Optuna trials (in total over all tasks).",
)
@click.option(
    "--epochs",
    envvar="EPOCHS",
    type=click.IntRange(min=1),
    help="Epochs per training (default: TrainConfig's).",
)
@click.option(
    "--timeout",
    envvar="TUNING_TIMEOUT_S",
    type=click.FloatRange(min=0),
    default=DEFAULT_TUNING_TIMEOUT_S,
    show_default=True,
    help="Stop starting new trials after this many seconds (0: no limit, --trials only).",
)
@click.option(
    "--optuna-storage",
    envvar="OPTUNA_STORAGE",
    help="RDB URL of a shared study, or 'database' (DATABASE_URL); default in memory.",
)
@click.option(
    "--optuna-database",
    envvar="OPTUNA_DATABASE",
    help="Database of the shared study on CLOUD_SQL_INSTANCE: its URL is built from DB_USER "
    "and DB_PASS (instead of OPTUNA_STORAGE).",
)
@click.option(
    "--train-config",
    envvar="TRAIN_CONFIG",
    help="TrainConfig fields as a JSON object, or a JSON file's path.",
)
@click.option("--search-units", envvar="SEARCH_UNITS", help="LSTM sizes to search, e.g. 32,64.")
@click.option(
    "--disparity-weight",
    envvar="DISPARITY_WEIGHT",
    type=click.FloatRange(min=0, max=1),
    default=0.5,
    show_default=True,
    help="Tuning objective: weight of the worst-decile RMSSE beside the mean RMSSE (0-1).",
)
@click.option(
    "--rmsse-tolerance",
    envvar="PROMOTION_RMSSE_TOLERANCE",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Relative mean-RMSSE margin the challenger must beat the champion (or the best "
    "baseline) by.",
)
@click.option(
    "--disparity-tolerance",
    envvar="PROMOTION_DISPARITY_TOLERANCE",
    type=click.FloatRange(min=0),
    default=0.10,
    show_default=True,
    help="Relative disparity worsening allowed.",
)
@click.option(
    "--coverage-bounds",
    envvar="PROMOTION_COVERAGE_BOUNDS",
    type=(click.FloatRange(0, 1), click.FloatRange(0, 1)),
    default=(0.75, 0.85),
    show_default=True,
    help="Where the challenger's test coverage of its 80 % interval must lie to be "
    "promoted (environment: two numbers separated by a space).",
)
@click.option(
    "--shap-products",
    envvar="SHAP_PRODUCTS",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Products whose test windows SHAP explains.",
)
@click.option(
    "--max-retries",
    envvar="TRAINER_MAX_RETRIES",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="The job's max retries: earlier failed attempts leave the request running.",
)
@click.option(
    "--partition-size",
    envvar="TRAIN_PARTITION_SIZE",
    type=click.IntRange(min=1),
    default=DEFAULT_PARTITION_SIZE,
    show_default=True,
    help="Products per partition (issue 26): a larger group is cut into stable hash ranges, "
    "one model each; the job's tasks share the partitions.",
)
@click.option(
    "--partition-key",
    envvar="TRAIN_PARTITION_KEY",
    help="Regex with one capturing group: the attribute of the product id partitions group "
    "by (e.g. '^(B\\d+)_' for the pasta brands); default: no attribute, hash ranges only.",
)
@click.option(
    "--gather-timeout",
    envvar="TRAIN_GATHER_TIMEOUT_S",
    type=click.FloatRange(min=1),
    default=DEFAULT_GATHER_TIMEOUT_S,
    show_default=True,
    help="Seconds a task waits for the shared tuning, and task 0 for every partition.",
)
def command(**params: Any) -> None:
    """Run the forecastguard trainer job once."""
    # TensorFlow's C++ INFO lines are not JSON; keep them out of the job's log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environ = dict(os.environ)
    try:
        level = Settings.from_env(environ).log_level
    except ConfigError:
        level = "INFO"
    configure_logging(level)
    try:
        settings, opts = build(params, environ)
    except ConfigError as exc:
        log.error("bad configuration", extra={"error": str(exc)})
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    from trainer.run.main import run_job

    sys.exit(run_job(settings, opts))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point for `python -m trainer`."""
    command.main(args=list(argv) if argv is not None else None, prog_name="python -m trainer")

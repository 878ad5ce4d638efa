"""The `forecastguard` command line.

Every option that has an environment variable reads it when the flag is absent
(flag > variable > default), through `Settings.from_env`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from forecastguard.config import ConfigError, Settings
from forecastguard.logs import configure_logging, get_logger, timed

log = get_logger(__name__)

database_url_option = click.option(
    "--database-url",
    metavar="URL",
    help="SQLAlchemy URL (sqlite:///file.db, mysql+pymysql://...). Default: $DATABASE_URL, "
    "else Cloud SQL via $CLOUD_SQL_INSTANCE.",
)


def settings_from(**overrides: object) -> Settings:
    """Settings from the environment with the given flags on top; exit 2 on a bad value."""
    try:
        return Settings.from_env(**overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def engine_from(settings: Settings):
    """The database engine for these settings; exit 2 when none is configured."""
    from forecastguard.db.engine import make_engine

    try:
        return make_engine(settings)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="forecastguard")
def main() -> None:
    """forecastguard: keep a retail demand-forecasting model healthy.

    Checks served forecasts against actual sales, detects drift, retrains and
    promotes a fairness-aware LSTM. `forecastguard COMMAND --help` for each command.
    """
    configure_logging(Settings.from_env().log_level if _env_ok() else "INFO")


def _env_ok() -> bool:
    try:
        Settings.from_env()
    except ConfigError:
        return False
    return True


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@database_url_option
@click.option("--revision", default="head", show_default=True, help="Alembic revision.")
def db_upgrade(database_url: str | None, revision: str) -> None:
    """Create or migrate the schema to the newest revision (safe to run again)."""
    from forecastguard.db.engine import DatabaseUnavailable, check_connection
    from forecastguard.db.migrate import current_revision, upgrade

    engine = engine_from(settings_from(database_url=database_url))
    try:
        check_connection(engine)
        with timed(log, "database migrated", revision=revision):
            upgrade(engine, revision)
    except DatabaseUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"database at revision {current_revision(engine)}")


@main.command("load-sales")
@database_url_option
@click.option(
    "--csv",
    "csv_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Sales file: long (product_id,date,units) or wide (DATE + QTY_* columns).",
)
@click.option(
    "--on-error",
    type=click.Choice(["fail", "skip"]),
    default="fail",
    show_default=True,
    help="fail: load nothing and list the offending rows; skip: load the good rows "
    "and report what was skipped.",
)
def load_sales_command(database_url: str | None, csv_path: Path, on_error: str) -> None:
    """Load (upsert) daily sales from a CSV file, in one transaction.

    Loading the same file twice changes nothing. Bad dates, negative or non-numeric
    units and duplicate (product, date) rows are errors that list the rows.
    """
    from forecastguard.db.engine import DatabaseUnavailable, check_connection
    from forecastguard.sales_io import SalesFileError, load_sales, read_sales_csv

    engine = engine_from(settings_from(database_url=database_url))
    try:
        with timed(log, "sales file read", path=str(csv_path)):
            frame = read_sales_csv(csv_path, on_error=on_error)  # type: ignore[arg-type]
    except SalesFileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    try:
        check_connection(engine)
        with timed(log, "sales loaded", rows=len(frame.sales)):
            result = load_sales(engine, frame)
    except DatabaseUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(
        f"loaded {result.rows} rows for {result.products} products "
        f"({result.first_date} to {result.last_date}, {frame.source_format} format, "
        f"{result.promotion_days} promotion days)"
    )
    if frame.problems:
        click.echo(f"skipped {result.skipped} row(s):", err=True)
        for problem in frame.problems[:50]:
            click.echo(f"  {problem}", err=True)
        if len(frame.problems) > 50:
            click.echo(f"  ... and {len(frame.problems) - 50} more", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()

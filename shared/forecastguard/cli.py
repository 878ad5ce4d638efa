"""The `forecastguard` command line.

Every option that has an environment variable reads it when the flag is absent
(flag > variable > default), through `Settings.from_env`.
"""

from __future__ import annotations

import os
import sys
import time
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
@click.option(
    "--negative",
    type=click.Choice(["reject", "clip", "keep"]),
    default="reject",
    show_default=True,
    help="Negative units (returns exceeding sales): reject them as bad rows, clip them "
    "to 0, or keep them as net returns (counted either way).",
)
@click.option(
    "--max-units",
    type=float,
    help="Refuse a row with more units than this (default: $SALES_MAX_UNITS, else 1000000).",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    help="Refuse a file larger than this (default: $SALES_MAX_BYTES, else 64 MiB).",
)
def load_sales_command(
    database_url: str | None,
    csv_path: Path,
    on_error: str,
    negative: str,
    max_units: float | None,
    max_bytes: int | None,
) -> None:
    """Load (upsert) daily sales from a CSV file, in one transaction.

    Loading the same file twice changes nothing. Bad dates, non-numeric units and
    duplicate (product, date) rows are errors that list the rows; negative units follow
    --negative. Sales that are not daily (weekly or monthly totals) load with a warning
    naming the detected frequency: the trainer refuses them. Product ids with control or
    invisible characters, rows above --max-units, duplicate or ambiguous columns and
    files above --max-bytes are refused (docs/security.md).
    """
    import sqlalchemy as sa

    from forecastguard.db.engine import DatabaseUnavailable, check_connection, database_error
    from forecastguard.sales_io import SalesFileError, load_sales, read_sales_csv

    if database_url and database_url.startswith("bigquery://"):
        # Issue 24: into BigQuery, by .venv-beam's interpreter (google-cloud-bigquery lives
        # there), with the same validation; upserted by (product, day).
        from forecastguard.health.engine import run_module

        args = [f"--csv={csv_path}", f"--target={database_url}", f"--on-error={on_error}"]
        args += [f"--negative={negative}"]
        args += [f"--max-units={max_units}"] if max_units is not None else []
        args += [f"--max-bytes={max_bytes}"] if max_bytes is not None else []
        endpoint = os.environ.get("BIGQUERY_API_ENDPOINT")
        args += [f"--bq-api-endpoint={endpoint}"] if endpoint else []
        proc = run_module("health_beam.load", args)
        click.echo(proc.stdout, nl=False)
        if proc.returncode:
            click.echo(proc.stderr.strip() or f"error: exit {proc.returncode}", err=True)
        sys.exit(proc.returncode)
    settings = settings_from(
        database_url=database_url,
        sales_max_units=str(max_units) if max_units is not None else None,
        sales_max_bytes=str(max_bytes) if max_bytes is not None else None,
    )
    engine = engine_from(settings)
    try:
        with timed(log, "sales file read", path=str(csv_path)):
            frame = read_sales_csv(
                csv_path,
                on_error=on_error,  # type: ignore[arg-type]
                negative=negative,  # type: ignore[arg-type]
                max_units=settings.sales_max_units,
                max_bytes=settings.sales_max_bytes,
            )
    except SalesFileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    try:
        check_connection(engine)
        with timed(log, "sales loaded", rows=len(frame.sales)):
            result = load_sales(engine, frame)
    except (DatabaseUnavailable, sa.exc.SQLAlchemyError) as exc:
        # A missing schema or a failing database is a clear error (nothing was written:
        # one transaction); any other database error is a bug and keeps its traceback.
        known = database_error(exc)
        if known is None:
            raise
        click.echo(f"error: {known}", err=True)
        sys.exit(2)
    click.echo(
        f"loaded {result.rows} rows for {result.products} products "
        f"({result.first_date} to {result.last_date}, {frame.source_format} format, "
        f"{result.promotion_days} promotion days; {frame.frequency.kind} sales)"
    )
    if frame.problems:
        click.echo(f"skipped {result.skipped} row(s):", err=True)
        for problem in frame.problems[:50]:
            click.echo(f"  {problem}", err=True)
        if len(frame.problems) > 50:
            click.echo(f"  ... and {len(frame.problems) - 50} more", err=True)
    for warning in frame.warnings():
        log.warning("sales file warning", extra={"warning": warning, "path": str(csv_path)})
        click.echo(f"warning: {warning}", err=True)


_DAY = click.DateTime(["%Y-%m-%d"])
# forecastguard.synth.DRIFT_KINDS, spelled out so --help does not import numpy (a test checks).
_DRIFT_KINDS = ("level_shift", "seasonality_change", "variance_change")


@main.command("synth")
@click.option(
    "--products",
    "n_products",
    type=click.IntRange(min=1),
    required=True,
    help="Number of products (ids P0001, P0002, ...).",
)
@click.option("--start", type=_DAY, required=True, help="First day of sales (YYYY-MM-DD).")
@click.option("--end", type=_DAY, required=True, help="Last day of sales (YYYY-MM-DD).")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Random seed: the same options always give the same data.",
)
@click.option(
    "--country",
    default="IT",
    show_default=True,
    help="Public holidays of this country (ISO code); the store is closed on them.",
)
@click.option(
    "--predictions-from",
    type=_DAY,
    metavar="DATE",
    help="Also write the forecasts a reasonable model would have served, from "
    "DATE to --end (they do not know about the drift).",
)
@click.option(
    "--model-version",
    default="synthetic-v1",
    show_default=True,
    help="model_version of the forecasts.",
)
@click.option(
    "--forecast-noise",
    type=click.FloatRange(min=0),
    default=0.1,
    show_default=True,
    help="Log-sd of the forecasts' daily error.",
)
@click.option(
    "--drift-share",
    type=click.FloatRange(0, 1),
    metavar="F",
    help="Inject drift into this share of the products (needs --drift-start).",
)
@click.option("--drift-start", type=_DAY, metavar="DATE", help="First day of the drift.")
@click.option(
    "--drift-kind",
    type=click.Choice(_DRIFT_KINDS),
    default="level_shift",
    show_default=True,
    help="What changes from --drift-start on.",
)
@click.option(
    "--drift-magnitude",
    type=float,
    metavar="M",
    help="level_shift: demand x (1 + M), default 1.0; seasonality_change: "
    "amplitude of the new weekly pattern in (0, 1], default 0.8; "
    "variance_change: factor on the spread around the expected demand, default 3.0.",
)
@database_url_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE.csv",
    help="Write a long CSV (product_id,date,units,on_promotion) instead of the "
    "database; forecasts go to FILE_predictions.csv.",
)
def synth_command(
    n_products: int,
    start,
    end,
    seed: int,
    country: str,
    predictions_from,
    model_version: str,
    forecast_noise: float,
    drift_share: float | None,
    drift_start,
    drift_kind: str,
    drift_magnitude: float | None,
    database_url: str | None,
    out: Path | None,
) -> None:
    """Generate realistic synthetic daily sales (and forecasts, and drift).

    Products range from intermittent slow sellers to hundreds of units a day, with
    weekday and yearly seasonality, public holidays, promotions, trend and
    over-dispersed noise. Writes to the database (sales, promotions and predictions
    upserted in one transaction: --database-url or $DATABASE_URL) or, with --out, to CSV.

    \b
    Example:
      forecastguard synth --products 50 --start 2024-01-01 --end 2024-06-30 --seed 7 \\
        --predictions-from 2024-05-01 --drift-share 0.3 --drift-start 2024-06-01 \\
        --database-url sqlite:///demo.db
    """
    if out is not None and database_url:
        raise click.UsageError("give either --out or --database-url, not both")
    if (drift_share is None) != (drift_start is None):
        raise click.UsageError("--drift-share and --drift-start go together")
    if drift_magnitude is not None and drift_share is None:
        raise click.UsageError("--drift-magnitude needs --drift-share and --drift-start")
    if predictions_from is not None and not start <= predictions_from <= end:
        raise click.UsageError("--predictions-from must lie between --start and --end")
    engine = None if out is not None else engine_from(settings_from(database_url=database_url))

    from forecastguard.synth import generate_predictions, generate_sales, inject_drift

    began = time.perf_counter()
    drifted: list[str] = []
    predictions = None
    try:
        sales = generate_sales(n_products, start, end, seed, country=country)
        if drift_share is not None:
            sales, drifted = inject_drift(
                sales,
                share=drift_share,
                start=drift_start,
                kind=drift_kind,
                seed=seed,
                magnitude=drift_magnitude,
            )
        if predictions_from is not None:
            predictions = generate_predictions(
                sales,
                start=predictions_from,
                end=end,
                seed=seed,
                noise=forecast_noise,
                model_version=model_version,
            )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    duration = round(time.perf_counter() - began, 4)
    log.info("synthetic data generated", extra={"rows": len(sales), "duration_s": duration})

    promo_days = int(sales["on_promotion"].sum())
    n_predictions = 0 if predictions is None else len(predictions)
    if out is not None:
        from forecastguard.synth.output import write_predictions_csv, write_sales_csv

        write_sales_csv(sales, out)
        where = str(out)
        if predictions is not None:
            forecasts = out.with_name(f"{out.stem}_predictions.csv")
            write_predictions_csv(predictions, forecasts)
            where += f" and {forecasts}"
    else:
        from forecastguard.db.engine import DatabaseUnavailable, check_connection
        from forecastguard.synth.output import write_database

        try:
            check_connection(engine)
            with timed(log, "synthetic data written", rows=len(sales) + n_predictions):
                write_database(engine, sales, predictions)
        except DatabaseUnavailable as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        where = engine.url.render_as_string(hide_password=True)
    click.echo(
        f"wrote {len(sales)} sales rows for {n_products} products "
        f"({start:%Y-%m-%d} to {end:%Y-%m-%d}), {promo_days} promotion days and "
        f"{n_predictions} predictions to {where}"
    )
    if drifted:
        click.echo(
            f"drift ({drift_kind}) from {drift_start:%Y-%m-%d} in {len(drifted)} products: "
            + ", ".join(drifted)
        )


@main.command("health")
@database_url_option
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Last day of the window (YYYY-MM-DD). Default: yesterday (UTC).",
)
@click.option(
    "--window-days",
    type=click.IntRange(1, 366),
    help="Days in the window. Default: $WINDOW_DAYS, else 30.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option(
    "--top", type=click.IntRange(1), default=20, show_default=True, help="Rows in the table."
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE",
    help="Also write the check's HTML report (self-contained, opens offline) to FILE.",
)
@click.option(
    "--engine",
    type=click.Choice(["inprocess", "beam"]),
    default="inprocess",
    show_default=True,
    help="inprocess: this process; beam: the Apache Beam pipeline on the in-process "
    "FnApiRunner (jobs/health_beam, run with $BEAM_PYTHON, default .venv-beam/bin/python). "
    "With beam, --database-url may also be bigquery://PROJECT/DATASET.",
)
@click.option(
    "--control-database-url",
    metavar="URL",
    envvar="CONTROL_DATABASE_URL",
    help="--engine beam on BigQuery: the database that stores the summary "
    "(default: $DATABASE_URL's Cloud SQL settings).",
)
@click.option(
    "--bq-api-endpoint",
    envvar="BIGQUERY_API_ENDPOINT",
    metavar="URL",
    help="BigQuery REST endpoint (an emulator; default Google's).",
)
@click.option(
    "--bq-storage-endpoint",
    envvar="BIGQUERY_STORAGE_ENDPOINT",
    metavar="HOST:PORT",
    help="BigQuery Storage Read API endpoint (an emulator; default Google's).",
)
def health_command(
    database_url: str | None,
    as_of,
    window_days: int | None,
    as_json: bool,
    top: int,
    html_path: Path | None,
    engine: str = "inprocess",
    control_database_url: str | None = None,
    bq_api_endpoint: str | None = None,
    bq_storage_endpoint: str | None = None,
) -> None:
    """Check the model on a window: RMSE, error drift, freshness (exit 0 healthy, 1 not, 2 error).

    Stores the check, writes metrics to $METRICS_SINK and, when the model is unhealthy,
    publishes a retrain request to $RETRAIN_TOPIC (each only when set). With $ARTIFACT_URI
    the check writes its HTML report to health/<check_id>/report.html there.
    """
    from datetime import UTC, datetime

    from forecastguard.db.engine import DatabaseUnavailable
    from forecastguard.health.render import to_json, to_text
    from forecastguard.health.service import HealthService

    today = datetime.now(UTC).date()
    if as_of is not None and as_of.date() > today:
        raise click.BadParameter(
            f"{as_of.date()} is in the future (today is {today})", param_hint="--as-of"
        )
    if engine == "beam":
        from forecastguard.health.engine import BeamRun, run_beam

        if html_path is not None:
            raise click.UsageError("--html is for --engine inprocess ($ARTIFACT_URI keeps beam's)")
        on_bigquery = bool(database_url) and database_url.startswith("bigquery://")
        settings = settings_from(
            database_url=None if on_bigquery else database_url, window_days=window_days
        )
        source = database_url if on_bigquery else settings.database_url
        if not source:
            raise click.UsageError("--engine beam needs --database-url (or $DATABASE_URL)")
        try:
            outcome = run_beam(
                BeamRun(
                    source=source,
                    as_of=as_of.date() if as_of else None,
                    window_days=settings.window_days,
                    control_database_url=control_database_url,
                    bq_api_endpoint=bq_api_endpoint,
                    bq_storage_endpoint=bq_storage_endpoint,
                )
            )
        except RuntimeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        click.echo(outcome.json_text if as_json else outcome.text(top))
        sys.exit(0 if outcome.healthy else 1)
    settings = settings_from(database_url=database_url, window_days=window_days)
    service = HealthService(settings, engine=engine_from(settings))
    try:
        result = service.run(as_of.date() if as_of else None, settings.window_days)
    except (DatabaseUnavailable, ConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(to_json(result) if as_json else to_text(result, top=top))
    if html_path is not None:
        from forecastguard.report.check_page import render_from_database

        try:
            html_path.write_text(render_from_database(service.engine, result), encoding="utf-8")
        except (DatabaseUnavailable, OSError) as exc:
            click.echo(f"error: the HTML report was not written: {exc}", err=True)
            sys.exit(2)
        click.echo(f"report written to {html_path}", err=True)
    sys.exit(0 if result.healthy else 1)


@main.command("serve")
@database_url_option
@click.option("--health-port", type=int, default=8080, show_default=True)
@click.option("--pubsub-port", type=int, default=8081, show_default=True)
@click.option("--trigger-port", type=int, default=8082, show_default=True)
@click.option(
    "--pages-port",
    type=click.IntRange(0, 65535),
    default=8083,
    show_default=True,
    help="Port of the pages: history at /, each check's report at /checks/<id>.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address the pages listen on; any address but loopback requires the same "
    "bearer token (or Google ID token) as /model/health.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A host name the pages answer for besides localhost, 127.0.0.1, ::1 and --host "
    "(repeatable); a request with any other Host header gets 400 (DNS rebinding).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".serve"),
    show_default=True,
    help="Folder for logs, the metrics file and artifacts (when not set in the environment).",
)
def serve_command(
    database_url: str | None,
    health_port: int,
    pubsub_port: int,
    trigger_port: int,
    pages_port: int,
    host: str,
    allowed_hosts: tuple[str, ...],
    workdir: Path,
) -> None:
    """Serve both functions and the health pages on this machine (Ctrl-C stops them).

    health_http answers POST/GET /model/health; health_pubsub and train_trigger take
    Pub/Sub push CloudEvents. Settings come from the environment, with local defaults:
    metrics to a JSON-lines file, retrain messages pushed to the local train_trigger,
    the trainer as a subprocess, and a random bearer token when HEALTH_API_TOKEN is unset.
    The pages: the history of the checks at /, each check's report at /checks/<id>, a
    product's history at /products/<id>.
    """
    import dataclasses
    import os
    import secrets
    import time

    from forecastguard.local import LocalStack, interrupts_as_exit, pages_server

    settings = settings_from(database_url=database_url)
    settings.require_database()
    work = workdir.resolve()
    ports = {
        "health_http": health_port,
        "health_pubsub": pubsub_port,
        "train_trigger": trigger_port,
    }
    stack = LocalStack(env={}, log_dir=work / "logs", ports=ports)
    token = settings.health_api_token or secrets.token_urlsafe(24)
    env = {
        "DATABASE_URL": settings.database_url or "",
        "HEALTH_API_TOKEN": token,
        "METRICS_SINK": settings.metrics_sink or str(work / "metrics.jsonl"),
        "RETRAIN_TOPIC": settings.retrain_topic or stack.url("train_trigger"),
        "TRAINER_JOB": settings.trainer_job or "local",
        "TRAINER_LOG_DIR": str(work / "logs"),
        "ARTIFACT_URI": settings.artifact_uri or (work / "artifacts").as_uri(),
    }
    stack.env = {k: v for k, v in env.items() if v}
    page_settings = dataclasses.replace(
        settings, health_api_token=token, artifact_uri=env["ARTIFACT_URI"]
    )
    try:
        pages = pages_server(
            page_settings, engine_from(settings), host, pages_port, allowed_hosts=allowed_hosts
        )
    except (ValueError, OSError) as exc:
        raise click.UsageError(f"--host/--pages-port: {exc}") from None
    with interrupts_as_exit(), stack, pages:
        stack.start()
        click.echo("serving (logs in " + str(work / "logs") + "):")
        for name in ports:
            click.echo(f"  {name:<14} {stack.url(name)}")
        click.echo(f"  {'pages':<14} {pages.url}  (history; reports at {pages.url}checks/<id>)")
        shown = token if not settings.health_api_token else "$HEALTH_API_TOKEN"
        click.echo(
            "\ntry:\n"
            f"  curl -s -X POST {stack.url('health_http')}model/health \\\n"
            f"       -H 'Authorization: Bearer {shown}' -H 'Content-Type: application/json' \\\n"
            "       -d '{\"window_days\": 30}'\n"
        )
        if not settings.health_api_token:
            os.environ.setdefault("HEALTH_API_TOKEN", token)
        try:
            while all(fn.process.poll() is None for fn in stack.served.values()):
                time.sleep(0.5)
            click.echo("a function exited; stopping (see its log)", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("stopping")
    # Leave the objects of this long run to the exit: on CPython 3.11 the interpreter's
    # last collection at exit did not finish (seen with the pages' Flask app loaded).
    import gc

    gc.freeze()


@main.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".demo"),
    show_default=True,
    help="Where the demo keeps everything; emptied at the start of each run.",
)
@click.option("--products", type=click.IntRange(1), default=30, show_default=True)
@click.option("--years", type=click.FloatRange(0.5, 10), default=2.0, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--sales-csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use real sales (long or wide CSV, e.g. the pasta data set) instead of synthetic ones.",
)
@click.option("--trials", type=click.IntRange(1), default=1, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=6, show_default=True)
@click.option("--drift-share", type=click.FloatRange(0, 1), default=0.3, show_default=True)
@click.option(
    "--drift-kind",
    type=click.Choice(_DRIFT_KINDS),
    default="level_shift",
    show_default=True,
)
def demo_command(
    workdir: Path,
    products: int,
    years: float,
    seed: int,
    sales_csv: Path | None,
    trials: int,
    epochs: int,
    drift_share: float,
    drift_kind: str,
) -> None:
    """Play the whole event chain on this machine, step by step (about 5 minutes).

    Sales history -> first model -> 4 weeks of sales with drift -> scheduled health check
    (Pub/Sub push to the health function) -> retrain message -> train_trigger -> trainer
    -> promotion, forecasts, report, email -> a second check over /model/health.
    """
    from forecastguard.demo import DemoOptions, run_demo

    opts = DemoOptions(
        workdir=workdir,
        products=products,
        years=years,
        seed=seed,
        sales_csv=sales_csv,
        trials=trials,
        epochs=epochs,
        drift_share=drift_share,
        drift_kind=drift_kind,
    )
    try:
        run_demo(opts)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: every child process was stopped", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()

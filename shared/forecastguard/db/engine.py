"""Engine factory: a SQLAlchemy URL, or Cloud SQL through cloud-sql-python-connector.

Every connection has timeouts (issue 14): connect, read and write for pymysql (directly or
through the Cloud SQL connector), a per-statement limit where the server has one
(MariaDB `max_statement_time`, MySQL `max_execution_time` for SELECTs) and SQLite's busy
timeout. `database_error` sorts a driver error into `DatabaseUnavailable` (worth another
try) or `SchemaMissing` (run `forecastguard db upgrade`).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from forecastguard.config import ConfigError, Settings

_connector_lock = threading.Lock()
_connector: Any = None


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached or failed mid-way (down, cut, stalled, locked)."""


class SchemaMissing(DatabaseUnavailable):
    """A table is missing: the database was not migrated."""


class DatabaseUrlError(ConfigError, DatabaseUnavailable):
    """DATABASE_URL (or --database-url) cannot be used: not a URL, an unknown driver, a
    bad port or an option its driver refuses. Both a `ConfigError` (a setting is wrong)
    and a `DatabaseUnavailable` (no database), so every caller that handles either
    answers with the message instead of a traceback."""


_URL_FORMS = "sqlite:///path/file.db or mysql+pymysql://user:password@host:3306/database"
# The driver's own errors for a URL it cannot use (parse, port, missing module, options).
_URL_ERRORS = (sa.exc.ArgumentError, ValueError, TypeError, AttributeError, KeyError, ImportError)


def _url_error(url: str, exc: BaseException) -> DatabaseUrlError:
    """A `DatabaseUrlError` naming the variable; the URL's password never appears."""
    text = f"{type(exc).__name__}: {exc}"
    match = re.search(r"://[^:/@]*:([^@]+)@", url)
    if match:
        text = text.replace(match.group(1), "***")
    return DatabaseUrlError(
        f"DATABASE_URL (or --database-url) is not a usable database URL ({text}); "
        f"expected {_URL_FORMS}"
    )


def _checked_connect(url: str) -> Any:
    """A `do_connect` hook: the driver's connect, its refusal of the URL's options named."""

    def do_connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise _url_error(url, exc) from None

    return do_connect


UPGRADE_HINT = "run `forecastguard db upgrade`"
# MySQL/MariaDB: 1146 no such table, 1054 unknown column.
_MYSQL_SCHEMA_CODES = (1146, 1054)


@dataclass(frozen=True)
class Timeouts:
    """Seconds: connect, read, write, and one statement (0: no statement limit)."""

    connect_s: int = 5
    read_s: int = 30
    write_s: int = 30
    statement_s: float = 25.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Timeouts:
        """The DB_*_TIMEOUT_S settings."""
        return cls(
            settings.db_connect_timeout_s,
            settings.db_read_timeout_s,
            settings.db_write_timeout_s,
            settings.db_statement_timeout_s,
        )

    def pymysql_args(self) -> dict[str, Any]:
        """pymysql's connect arguments."""
        return {
            "connect_timeout": self.connect_s,
            "read_timeout": self.read_s,
            "write_timeout": self.write_s,
        }


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Re-raise a driver error as the `DatabaseUnavailable` (or `SchemaMissing`) it means
    (`database_error`); other errors pass unchanged."""
    try:
        yield
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        error = database_error(exc)
        if error is None:
            raise
        raise error from exc


def database_error(exc: BaseException) -> DatabaseUnavailable | None:
    """The `DatabaseUnavailable` (or `SchemaMissing`) a driver error means, else None.

    Operational and interface errors (connection refused, cut, timed out, locked) are the
    database failing; a missing table is `SchemaMissing`. Other errors are bugs.
    """
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if isinstance(exc, sa.exc.TimeoutError):  # the pool had no connection in time
        return DatabaseUnavailable(f"no database connection available: {exc}")
    if not isinstance(exc, sa.exc.DBAPIError):
        return None
    orig = exc.orig
    text = str(orig)
    code = orig.args[0] if orig is not None and orig.args else None
    if "no such table" in text or (
        isinstance(exc, sa.exc.ProgrammingError | sa.exc.OperationalError)
        and code in _MYSQL_SCHEMA_CODES
    ):
        return SchemaMissing(f"the database schema is missing or old ({text}): {UPGRADE_HINT}")
    if (
        isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
        or exc.connection_invalidated
    ):
        return DatabaseUnavailable(f"database failed: {type(orig).__name__}: {text}")
    return None


def _cloud_sql_connector() -> Any:
    # Created lazily, once per process: the Connector needs credentials at construction.
    global _connector
    with _connector_lock:
        if _connector is None:
            from google.cloud.sql.connector import Connector

            _connector = Connector(refresh_strategy="lazy")
        return _connector


def connector_args(settings: Settings, timeouts: Timeouts) -> dict[str, Any]:
    """The Cloud SQL connector's keyword arguments for one connection (pure): the login,
    the instance address to use (DB_IP_TYPE: PUBLIC, PRIVATE or PSC) and the timeouts."""
    from google.cloud.sql.connector import IPTypes

    return {
        "user": settings.db_user,
        "password": None if settings.db_iam_auth else settings.db_pass,
        "db": settings.db_name,
        "enable_iam_auth": settings.db_iam_auth,
        "ip_type": IPTypes[settings.db_ip_type],
        "timeout": timeouts.connect_s,
        "read_timeout": timeouts.read_s,
        "write_timeout": timeouts.write_s,
    }


def _sqlite_pragmas(busy_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cursor.close()

    return on_connect


def _mysql_statement_limit(seconds: float) -> Any:
    """Set the session's statement time limit on each new MySQL/MariaDB connection."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT VERSION()")
            version = str(cursor.fetchone()[0])
            if "mariadb" in version.lower():
                cursor.execute(f"SET SESSION max_statement_time = {float(seconds):.3f}")
            else:
                cursor.execute(f"SET SESSION max_execution_time = {int(seconds * 1000)}")
        finally:
            cursor.close()

    return on_connect


def make_engine(
    settings_or_url: Settings | str, *, timeouts: Timeouts | None = None, **engine_kwargs: Any
) -> sa.Engine:
    """Build a pooled engine for a URL (SQLite, mysql+pymysql) or for Cloud SQL.

    With a `Settings` whose `database_url` is unset, connects through the Cloud SQL
    connector to `cloud_sql_instance`, with a password or IAM database authentication.
    `timeouts` default to the settings' DB_*_TIMEOUT_S (or `Timeouts()` for a URL).
    """
    if isinstance(settings_or_url, str):
        url: str | None = settings_or_url
        settings = None
        timeouts = timeouts or Timeouts()
    else:
        settings = settings_or_url
        settings.require_database()
        url = settings.database_url
        timeouts = timeouts or Timeouts.from_settings(settings)
    if url:
        try:
            parsed = sa.make_url(url)
        except _URL_ERRORS as exc:
            raise _url_error(url, exc) from None
        backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if backend == "sqlite":
            busy_s = timeouts.statement_s or timeouts.read_s
            kwargs["connect_args"] = {"timeout": busy_s}
        elif backend in {"mysql", "mariadb"}:
            kwargs.update(
                pool_recycle=1800,
                pool_timeout=timeouts.read_s,
                connect_args=timeouts.pymysql_args(),
            )
        kwargs.update(engine_kwargs)
        try:
            engine = sa.create_engine(parsed, **kwargs)
        except _URL_ERRORS as exc:
            raise _url_error(url, exc) from None
        sa.event.listen(engine, "do_connect", _checked_connect(url))
        if backend == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas(int(busy_s * 1000)))
        elif backend in {"mysql", "mariadb"} and timeouts.statement_s > 0:
            sa.event.listen(engine, "connect", _mysql_statement_limit(timeouts.statement_s))
        return engine

    assert settings is not None
    args = connector_args(settings, timeouts)

    def connect() -> Any:
        return _cloud_sql_connector().connect(settings.cloud_sql_instance, "pymysql", **args)

    kwargs = {"creator": connect, "pool_size": 5, "max_overflow": 2, "pool_timeout": 30}
    kwargs.update(pool_recycle=1800, pool_pre_ping=True, pool_timeout=timeouts.read_s)
    kwargs.update(engine_kwargs)
    engine = sa.create_engine("mysql+pymysql://", **kwargs)
    if timeouts.statement_s > 0:
        sa.event.listen(engine, "connect", _mysql_statement_limit(timeouts.statement_s))
    return engine


def check_connection(engine: sa.Engine) -> None:
    """Raise `DatabaseUnavailable` (naming the database) unless a trivial query works."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise DatabaseUnavailable(
            f"database {where} is unreachable: {getattr(exc, 'orig', None) or exc}"
        ) from exc

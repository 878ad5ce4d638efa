"""Engine factory: a SQLAlchemy URL, or Cloud SQL through cloud-sql-python-connector."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from forecastguard.config import Settings

_connector_lock = threading.Lock()
_connector: Any = None


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached (down, wrong address or credentials)."""


def _cloud_sql_connector() -> Any:
    # Created lazily, once per process: the Connector needs credentials at construction.
    global _connector
    with _connector_lock:
        if _connector is None:
            from google.cloud.sql.connector import Connector, IPTypes

            _connector = Connector(ip_type=IPTypes.PUBLIC, refresh_strategy="lazy")
        return _connector


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(settings_or_url: Settings | str, **engine_kwargs: Any) -> sa.Engine:
    """Build a pooled engine for a URL (SQLite, mysql+pymysql) or for Cloud SQL.

    With a `Settings` whose `database_url` is unset, connects through the Cloud SQL
    connector to `cloud_sql_instance`, with a password or IAM database authentication.
    """
    if isinstance(settings_or_url, str):
        url: str | None = settings_or_url
        settings = None
    else:
        settings = settings_or_url
        settings.require_database()
        url = settings.database_url
    if url:
        parsed = sa.make_url(url)
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 30}
        elif parsed.get_backend_name() in {"mysql", "mariadb"}:
            kwargs.update(pool_recycle=1800, connect_args={"connect_timeout": 10})
        kwargs.update(engine_kwargs)
        engine = sa.create_engine(parsed, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    assert settings is not None

    def connect() -> Any:
        return _cloud_sql_connector().connect(
            settings.cloud_sql_instance,
            "pymysql",
            user=settings.db_user,
            password=None if settings.db_iam_auth else settings.db_pass,
            db=settings.db_name,
            enable_iam_auth=settings.db_iam_auth,
        )

    kwargs = {"creator": connect, "pool_size": 5, "max_overflow": 2, "pool_timeout": 30}
    kwargs.update(pool_recycle=1800, pool_pre_ping=True)
    kwargs.update(engine_kwargs)
    return sa.create_engine("mysql+pymysql://", **kwargs)


def check_connection(engine: sa.Engine) -> None:
    """Raise `DatabaseUnavailable` (naming the database) unless a trivial query works."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise DatabaseUnavailable(f"database {where} is unreachable: {exc.orig}") from exc

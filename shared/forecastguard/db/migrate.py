"""Run the Alembic migrations programmatically (what `forecastguard db upgrade` does)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from forecastguard.db.engine import make_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: sa.Engine) -> Config:
    """An Alembic config bound to `engine` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine_or_url: sa.Engine | str, revision: str = "head") -> None:
    """Migrate the database to `revision` (default: the newest)."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()

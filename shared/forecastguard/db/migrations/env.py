"""Alembic environment: the engine comes from `forecastguard.db.migrate.alembic_config`."""

from __future__ import annotations

from alembic import context

from forecastguard.db.schema import metadata

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()

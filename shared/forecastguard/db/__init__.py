"""The database: schema, engine factory, Alembic migrations and dialect-aware upserts."""

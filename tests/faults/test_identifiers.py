"""Identifiers that differ only by case or accent stay distinct keys (issue 14, item 4)."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from forecastguard.db import schema
from forecastguard.db.engine import make_engine
from forecastguard.db.migrate import upgrade
from forecastguard.db.upsert import upsert_rows

IDS = ["P1", "p1", "cafe", "café", "CAFÉ", "straße", "strasse"]


def test_case_and_accent_variants_are_distinct_products(engine):
    rows = [
        {"product_id": pid, "sale_date": date(2026, 1, 1), "units_sold": float(i)}
        for i, pid in enumerate(IDS)
    ]
    with engine.begin() as conn:
        upsert_rows(conn, schema.sales, rows)
        upsert_rows(
            conn,
            schema.promotions,
            [{"product_id": p, "promo_date": date(2026, 1, 1)} for p in IDS],
        )
    with engine.connect() as conn:
        got = dict(
            conn.execute(sa.select(schema.sales.c.product_id, schema.sales.c.units_sold)).all()
        )
        n_promos = conn.execute(sa.select(sa.func.count()).select_from(schema.promotions)).scalar()
        # A lookup by key finds exactly its own row.
        one = conn.execute(
            sa.select(schema.sales.c.units_sold).where(schema.sales.c.product_id == "p1")
        ).all()
    assert got == {pid: float(i) for i, pid in enumerate(IDS)}
    assert n_promos == len(IDS)
    assert one == [(1.0,)]


@pytest.mark.mariadb
def test_every_identifier_column_is_binary_on_mariadb(mariadb_url):
    engine = make_engine(mariadb_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT table_name, column_name, collation_name FROM "
                    "information_schema.columns WHERE table_schema = DATABASE() "
                    "AND column_name IN ('product_id', 'model_version', 'request_id', "
                    "'health_check_id', 'run_id', 'event_id')"
                )
            ).all()
    finally:
        engine.dispose()
    assert rows, "no identifier columns found"
    assert {r[2] for r in rows} == {"utf8mb4_bin"}, rows


@pytest.mark.mariadb
def test_migration_downgrades_and_upgrades_again(mariadb_url):
    from alembic import command

    from forecastguard.db.migrate import alembic_config

    engine = make_engine(mariadb_url)
    try:
        command.downgrade(alembic_config(engine), "0003")
        upgrade(engine)
        with engine.begin() as conn:
            upsert_rows(
                conn,
                schema.sales,
                [
                    {"product_id": p, "sale_date": date(2026, 1, 2), "units_sold": 1.0}
                    for p in ("P1", "p1")
                ],
            )
            assert conn.execute(sa.select(sa.func.count()).select_from(schema.sales)).scalar() == 2
    finally:
        engine.dispose()

from datetime import date, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from forecastguard.db import schema
from forecastguard.db.engine import DatabaseUnavailable, check_connection, make_engine
from forecastguard.db.migrate import current_revision, upgrade
from forecastguard.db.upsert import upsert_rows


def test_migrations_create_exactly_the_schema(engine):
    assert current_revision(engine) is not None
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata
        )
    assert diff == []


def test_upgrade_is_idempotent(engine):
    before = current_revision(engine)
    upgrade(engine)
    assert current_revision(engine) == before


def test_upsert_inserts_then_updates(engine):
    rows = [
        {"product_id": "A", "sale_date": date(2026, 1, d), "units_sold": float(d)}
        for d in range(1, 11)
    ]
    with engine.begin() as conn:
        upsert_rows(conn, schema.sales, rows, batch_rows=3)
    with engine.begin() as conn:
        upsert_rows(conn, schema.sales, [{**rows[0], "units_sold": 99.5}])
    with engine.connect() as conn:
        got = dict(
            conn.execute(sa.select(schema.sales.c.sale_date, schema.sales.c.units_sold)).all()
        )
    assert len(got) == 10 and got[date(2026, 1, 1)] == 99.5 and got[date(2026, 1, 2)] == 2.0


def test_upsert_of_key_only_table_is_idempotent(engine):
    rows = [{"product_id": "A", "promo_date": date(2026, 1, 1)}]
    for _ in range(2):
        with engine.begin() as conn:
            upsert_rows(conn, schema.promotions, rows)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.promotions)).scalar() == 1


def test_predictions_keep_full_precision(engine):
    row = {
        "product_id": "A",
        "target_date": date(2026, 1, 1),
        "predicted_units": 123456.789012,
        "model_version": "m1",
        "created_at": datetime(2026, 1, 1, 12),
    }
    with engine.begin() as conn:
        upsert_rows(conn, schema.predictions, [row])
        value = conn.execute(sa.select(schema.predictions.c.predicted_units)).scalar()
    assert value == pytest.approx(123456.789012, rel=1e-12)


def test_unreachable_database_is_named():
    engine = make_engine("mysql+pymysql://root@127.0.0.1:1/nowhere")
    with pytest.raises(DatabaseUnavailable, match=r"127\.0\.0\.1:1"):
        check_connection(engine)


def test_predictions_store_the_interval_and_0006_downgrades(engine):
    """Migration 0006: the served P10/P50/P90 beside the point; nullable (older rows)."""
    from alembic import command

    from forecastguard.db.migrate import alembic_config

    rows = [
        {
            "product_id": "A",
            "target_date": date(2026, 1, 1),
            "predicted_units": 10.25,
            "predicted_p10": 4.5,
            "predicted_p50": 9.75,
            "predicted_p90": 17.125,
            "model_version": "m1",
            "created_at": datetime(2026, 1, 1, 12),
        },
        {
            "product_id": "B",
            "target_date": date(2026, 1, 1),
            "predicted_units": 3.0,
            "predicted_p10": None,
            "predicted_p50": None,
            "predicted_p90": None,
            "model_version": "m0",
            "created_at": datetime(2026, 1, 1, 12),
        },
    ]
    with engine.begin() as conn:
        upsert_rows(conn, schema.predictions, rows)
    p = schema.predictions.c
    with engine.connect() as conn:
        got = conn.execute(
            sa.select(p.product_id, p.predicted_p10, p.predicted_p50, p.predicted_p90).order_by(
                p.product_id
            )
        ).all()
    assert [tuple(r) for r in got] == [("A", 4.5, 9.75, 17.125), ("B", None, None, None)]
    command.downgrade(alembic_config(engine), "0005")
    cols = {c["name"] for c in sa.inspect(engine).get_columns("predictions")}
    assert "predicted_p10" not in cols and "predicted_units" in cols
    upgrade(engine)
    cols = {c["name"] for c in sa.inspect(engine).get_columns("predictions")}
    assert {"predicted_p10", "predicted_p50", "predicted_p90"} <= cols

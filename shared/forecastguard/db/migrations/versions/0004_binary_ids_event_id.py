"""Identifier columns compare byte for byte on MySQL/MariaDB; health checks keyed by event.

Issue 14: MariaDB's default `utf8mb4_general_ci` merged product ids differing by case or
accent (`P1`/`p1`, `cafe`/`café`), so one product's sales overwrote another's. Every
column that is, or joins on, an identifier becomes `utf8mb4_bin` (SQLite compares bytes
already). `health_checks.event_id` keys a check by the Pub/Sub event that asked for it,
so a redelivery reuses the stored check.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, length, nullable)
_IDENTIFIERS = (
    ("sales", "product_id", 64, False),
    ("promotions", "product_id", 64, False),
    ("predictions", "product_id", 64, False),
    ("predictions", "model_version", 64, False),
    ("model_residuals", "model_version", 64, False),
    ("model_residuals", "product_id", 64, False),
    ("health_checks", "id", 36, False),
    ("health_check_products", "health_check_id", 36, False),
    ("health_check_products", "product_id", 64, False),
    ("retrain_requests", "request_id", 128, False),
    ("retrain_requests", "health_check_id", 36, True),
    ("retrain_requests", "model_version", 64, True),
    ("model_registry", "model_version", 64, False),
    ("model_registry", "run_id", 64, False),
    ("model_registry", "request_id", 128, True),
)
_FK_COLUMNS = ("health_check_products", ["health_check_id"], "health_checks", ["id"])


def _ident(length: int) -> sa.types.TypeEngine:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def _health_check_fk(conn: sa.Connection) -> str | None:
    for fk in sa.inspect(conn).get_foreign_keys("health_check_products"):
        if fk["referred_table"] == "health_checks":
            return fk["name"]
    return None


def _set_collation(binary: bool) -> None:
    conn = op.get_bind()
    collation = "utf8mb4_bin" if binary else "utf8mb4_general_ci"
    # A column in a foreign key cannot change collation: drop the key, alter, re-create it.
    fk = _health_check_fk(conn)
    if fk:
        op.drop_constraint(fk, "health_check_products", type_="foreignkey")
    for table, column, length, nullable in _IDENTIFIERS:
        op.alter_column(
            table,
            column,
            existing_type=sa.String(length),
            type_=mysql.VARCHAR(length, charset="utf8mb4", collation=collation),
            existing_nullable=nullable,
        )
    table, local, referred, remote = _FK_COLUMNS
    op.create_foreign_key(fk, table, referred, local, remote, ondelete="CASCADE")


def upgrade() -> None:
    if op.get_bind().dialect.name in {"mysql", "mariadb"}:
        _set_collation(binary=True)
    with op.batch_alter_table("health_checks") as batch:
        batch.add_column(sa.Column("event_id", _ident(128), nullable=True))
        batch.create_unique_constraint("uq_health_checks_event_id", ["event_id"])


def downgrade() -> None:
    with op.batch_alter_table("health_checks") as batch:
        batch.drop_constraint("uq_health_checks_event_id", type_="unique")
        batch.drop_column("event_id")
    if op.get_bind().dialect.name in {"mysql", "mariadb"}:
        _set_collation(binary=False)

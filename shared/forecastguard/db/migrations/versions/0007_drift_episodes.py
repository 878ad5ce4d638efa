"""Drift episodes (issue 23): a shift the chain did not fix stays flagged.

`health_drift_episodes` keeps, per (served model version, product), the drift the
health check found and that has not passed a check since: the first day of the window
that first flagged it (`since`), the first and the latest check's as_of and how many
checks flagged it in a row. The check judges such a product against its errors from
before `since` (or the model's holdout errors), never against the shifted days, and
reports the drift as persisting until a check passes or another model serves.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _ident(length: int) -> sa.types.TypeEngine:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    op.create_table(
        "health_drift_episodes",
        sa.Column("model_version", _ident(64), primary_key=True),
        sa.Column("product_id", _ident(64), primary_key=True),
        sa.Column("since", sa.Date, nullable=False),
        sa.Column("first_as_of", sa.Date, nullable=False),
        sa.Column("last_as_of", sa.Date, nullable=False),
        sa.Column("checks", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("health_drift_episodes")

"""Per-product drift kind and size in health_check_products (issue 13).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_REAL = ("drift_pvalue", "drift_qvalue", "bias_shift", "bias_shift_sd", "spread_ratio")


def upgrade() -> None:
    with op.batch_alter_table("health_check_products") as batch:
        batch.add_column(sa.Column("drift_kind", sa.String(8), nullable=True))
        batch.add_column(sa.Column("drift_test", sa.String(16), nullable=True))
        for name in _REAL:
            batch.add_column(sa.Column(name, sa.Double, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("health_check_products") as batch:
        for name in ("drift_kind", "drift_test", *_REAL):
            batch.drop_column(name)

"""The kind of forecaster a registry row is (issue 12): `lstm`, `baseline:seasonal_naive`,
`baseline:moving_average` (later `lightgbm`, `blend`).

A baseline can be the champion (the fallback when no trained model beats it), so the
registry says which kind of forecaster each version is. Existing rows are LSTMs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_registry") as batch:
        batch.add_column(sa.Column("kind", sa.String(32), nullable=False, server_default="lstm"))


def downgrade() -> None:
    with op.batch_alter_table("model_registry") as batch:
        batch.drop_column("kind")

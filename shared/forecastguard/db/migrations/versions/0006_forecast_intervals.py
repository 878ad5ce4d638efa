"""Forecast intervals (issue 27): the served P10/P50/P90 beside each point forecast.

`predictions.predicted_p10`, `predicted_p50`, `predicted_p90` (units, nullable: rows
written before intervals, or by a forecaster without a calibration, have none). The
health check judges the window's coverage of [P10, P90] against the nominal 80 %.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = ("predicted_p10", "predicted_p50", "predicted_p90")


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Double, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)

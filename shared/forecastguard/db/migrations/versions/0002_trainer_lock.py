"""The trainer lock: a one-row mutex that serializes claims of the trainer.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    lock = op.create_table(
        "trainer_lock",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    op.bulk_insert(lock, [{"name": "trainer", "updated_at": now}])


def downgrade() -> None:
    op.drop_table("trainer_lock")

"""The initial schema: sales, promotions, predictions, residuals, health checks,
retrain requests and the model registry.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PID = sa.String(64)
VERSION = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "sales",
        sa.Column("product_id", PID, primary_key=True),
        sa.Column("sale_date", sa.Date, primary_key=True),
        sa.Column("units_sold", sa.Double, nullable=False),
    )
    op.create_table(
        "promotions",
        sa.Column("product_id", PID, primary_key=True),
        sa.Column("promo_date", sa.Date, primary_key=True),
    )
    op.create_table(
        "predictions",
        sa.Column("product_id", PID, primary_key=True),
        sa.Column("target_date", sa.Date, primary_key=True),
        sa.Column("predicted_units", sa.Double, nullable=False),
        sa.Column("model_version", VERSION, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_predictions_target_date", "predictions", ["target_date"])
    op.create_table(
        "model_residuals",
        sa.Column("model_version", VERSION, primary_key=True),
        sa.Column("product_id", PID, primary_key=True),
        sa.Column("target_date", sa.Date, primary_key=True),
        sa.Column("error", sa.Double, nullable=False),
    )
    op.create_table(
        "health_checks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("checked_at", sa.DateTime, nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("window_start", sa.Date, nullable=False),
        sa.Column("window_end", sa.Date, nullable=False),
        sa.Column("healthy", sa.Boolean, nullable=False),
        sa.Column("avg_rmse", sa.Double, nullable=True),
        sa.Column("p_value", sa.Double, nullable=True),
        sa.Column("drift_detected", sa.Boolean, nullable=False),
        sa.Column("drifted_share", sa.Double, nullable=True),
        sa.Column("n_products", sa.Integer, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("model_versions", sa.Text, nullable=False),
        sa.Column("duration_s", sa.Double, nullable=False),
        sa.Column("result_json", sa.Text, nullable=False),
    )
    op.create_index("ix_health_checks_checked_at", "health_checks", ["checked_at"])
    op.create_table(
        "health_check_products",
        sa.Column(
            "health_check_id",
            sa.String(36),
            sa.ForeignKey("health_checks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("product_id", PID, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("rmse", sa.Double, nullable=True),
        sa.Column("mae", sa.Double, nullable=True),
        sa.Column("bias", sa.Double, nullable=True),
        sa.Column("rmsse", sa.Double, nullable=True),
        sa.Column("ks_pvalue", sa.Double, nullable=True),
        sa.Column("ks_qvalue", sa.Double, nullable=True),
        sa.Column("drift", sa.Boolean, nullable=False),
        sa.Column("reference", sa.String(16), nullable=True),
    )
    op.create_table(
        "retrain_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("health_check_id", sa.String(36), nullable=True),
        sa.Column("model_version", VERSION, nullable=True),
        sa.Column("window_start", sa.Date, nullable=True),
        sa.Column("window_end", sa.Date, nullable=True),
        sa.Column("message_id", sa.String(128), nullable=True),
        sa.Column("payload", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("execution_name", sa.String(512), nullable=True),
        sa.Column("log_path", sa.String(1024), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_retrain_requests_status", "retrain_requests", ["status"])
    op.create_table(
        "model_registry",
        sa.Column("model_version", VERSION, primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("artifact_uri", sa.String(1024), nullable=False),
        sa.Column("rmse", sa.Double, nullable=True),
        sa.Column("rmsse", sa.Double, nullable=True),
        sa.Column("disparity", sa.Double, nullable=True),
        sa.Column("metrics_json", sa.Text, nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("promoted_at", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    for table in (
        "model_registry",
        "retrain_requests",
        "health_check_products",
        "health_checks",
        "model_residuals",
        "predictions",
        "promotions",
        "sales",
    ):
        op.drop_table(table)

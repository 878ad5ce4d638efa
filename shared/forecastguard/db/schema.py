"""The database schema: SQLAlchemy Core tables, portable across SQLite and MySQL/MariaDB.

`sales` and `predictions` are the contract with the serving side (DESIGN.md §4); the
other tables are forecastguard's own. Alembic migrations under `migrations/` create
exactly these tables (a test compares the migrated database with this metadata).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

PRODUCT_ID = 64
MODEL_VERSION = 64


def Ident(length: int) -> sa.types.TypeEngine:
    """A string identifier (product id, model version, key): compared byte for byte.

    MySQL/MariaDB's default `utf8mb4_general_ci` treats `P1`/`p1` and `cafe`/`café` as the
    same key, so one product's rows would overwrite another's (issue 14); `utf8mb4_bin`
    keeps them apart. SQLite compares bytes already (BINARY is its default collation).
    """
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


# Double precision on MySQL (its plain FLOAT is single precision); REAL on SQLite.
Real = sa.Double

sales = sa.Table(
    "sales",
    metadata,
    sa.Column("product_id", Ident(PRODUCT_ID), primary_key=True),
    sa.Column("sale_date", sa.Date, primary_key=True),
    sa.Column("units_sold", Real, nullable=False),
)

# Days on which a product was on promotion (one row a promoted day; absent = no promotion).
promotions = sa.Table(
    "promotions",
    metadata,
    sa.Column("product_id", Ident(PRODUCT_ID), primary_key=True),
    sa.Column("promo_date", sa.Date, primary_key=True),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("product_id", Ident(PRODUCT_ID), primary_key=True),
    sa.Column("target_date", sa.Date, primary_key=True),
    sa.Column("predicted_units", Real, nullable=False),
    sa.Column("model_version", Ident(MODEL_VERSION), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # the served interval (issue 27; NULL: written without one): quantiles in units
    sa.Column("predicted_p10", Real, nullable=True),
    sa.Column("predicted_p50", Real, nullable=True),
    sa.Column("predicted_p90", Real, nullable=True),
    sa.Index("ix_predictions_target_date", "target_date"),
)

# The champion's holdout errors (actual - predicted): the health check's reference
# distribution when no earlier window has predictions.
model_residuals = sa.Table(
    "model_residuals",
    metadata,
    sa.Column("model_version", Ident(MODEL_VERSION), primary_key=True),
    sa.Column("product_id", Ident(PRODUCT_ID), primary_key=True),
    sa.Column("target_date", sa.Date, primary_key=True),
    sa.Column("error", Real, nullable=False),
)

health_checks = sa.Table(
    "health_checks",
    metadata,
    sa.Column("id", Ident(36), primary_key=True),  # uuid4 hex with dashes
    sa.Column("checked_at", sa.DateTime, nullable=False),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("window_start", sa.Date, nullable=False),
    sa.Column("window_end", sa.Date, nullable=False),
    sa.Column("healthy", sa.Boolean, nullable=False),
    sa.Column("avg_rmse", Real, nullable=True),
    sa.Column("p_value", Real, nullable=True),
    sa.Column("drift_detected", sa.Boolean, nullable=False),
    sa.Column("drifted_share", Real, nullable=True),
    sa.Column("n_products", sa.Integer, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),  # JSON list of strings
    sa.Column("model_versions", sa.Text, nullable=False),  # JSON list of strings
    sa.Column("duration_s", Real, nullable=False),
    sa.Column("result_json", sa.Text, nullable=False),  # the full result as returned
    # The Pub/Sub event that asked for the check (NULL over HTTP): a redelivery of the same
    # scheduled message finds its stored check instead of storing another (issue 14).
    sa.Column("event_id", Ident(128), nullable=True),
    sa.UniqueConstraint("event_id", name="uq_health_checks_event_id"),
    sa.Index("ix_health_checks_checked_at", "checked_at"),
)

health_check_products = sa.Table(
    "health_check_products",
    metadata,
    sa.Column(
        "health_check_id",
        Ident(36),
        sa.ForeignKey("health_checks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("product_id", Ident(PRODUCT_ID), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("rmse", Real, nullable=True),
    sa.Column("mae", Real, nullable=True),
    sa.Column("bias", Real, nullable=True),
    sa.Column("rmsse", Real, nullable=True),
    sa.Column("ks_pvalue", Real, nullable=True),
    sa.Column("ks_qvalue", Real, nullable=True),
    sa.Column("drift", sa.Boolean, nullable=False),
    sa.Column("reference", sa.String(16), nullable=True),  # previous_window | holdout | none
    # The drift test (issue 13): kind level | scale | shape (NULL: none), the test that found
    # it, its p- and BH q-value, and the size of the change against the reference.
    sa.Column("drift_kind", sa.String(8), nullable=True),
    sa.Column("drift_test", sa.String(16), nullable=True),
    sa.Column("drift_pvalue", Real, nullable=True),
    sa.Column("drift_qvalue", Real, nullable=True),
    sa.Column("bias_shift", Real, nullable=True),  # window mean error - reference mean error
    sa.Column("bias_shift_sd", Real, nullable=True),  # the same in reference sd
    sa.Column("spread_ratio", Real, nullable=True),  # window sd / reference sd
)

# Drift that has not passed a check since it was found (issue 23), per served model and
# product: the check judges the product against its errors from before `since` (the first
# day of the window that first flagged it) and reports it as persisting.
health_drift_episodes = sa.Table(
    "health_drift_episodes",
    metadata,
    sa.Column("model_version", Ident(MODEL_VERSION), primary_key=True),
    sa.Column("product_id", Ident(PRODUCT_ID), primary_key=True),
    sa.Column("since", sa.Date, nullable=False),
    sa.Column("first_as_of", sa.Date, nullable=False),
    sa.Column("last_as_of", sa.Date, nullable=False),
    sa.Column("checks", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(8), nullable=True),
)

# The idempotency ledger of retrain requests; request_id is the Pub/Sub message's key.
# status: received | rejected | queued | superseded | launching | started | finished | failed
# (forecastguard.retrain documents the life of a request).
retrain_requests = sa.Table(
    "retrain_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", Ident(128), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("health_check_id", Ident(36), nullable=True),
    sa.Column("model_version", Ident(MODEL_VERSION), nullable=True),
    sa.Column("window_start", sa.Date, nullable=True),
    sa.Column("window_end", sa.Date, nullable=True),
    sa.Column("message_id", sa.String(128), nullable=True),
    sa.Column("payload", sa.Text, nullable=True),  # the raw message, kept for rejected ones
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("execution_name", sa.String(512), nullable=True),
    sa.Column("log_path", sa.String(1024), nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    sa.Index("ix_retrain_requests_status", "status"),
)

# A one-row mutex: every change of a retrain request's status (after its first insert)
# first updates this row, so the in-progress check and the claim are serialized on
# SQLite and MySQL alike. The row is created by migration 0002 (or on first use).
trainer_lock = sa.Table(
    "trainer_lock",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

# Every trained model; status: candidate | champion | retired | rejected.
model_registry = sa.Table(
    "model_registry",
    metadata,
    sa.Column("model_version", Ident(MODEL_VERSION), primary_key=True),
    sa.Column("run_id", Ident(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # lstm | baseline:seasonal_naive | baseline:moving_average (trainer.serve.forecast.KINDS)
    sa.Column("kind", sa.String(32), nullable=False, server_default="lstm"),
    sa.Column("artifact_uri", sa.String(1024), nullable=False),
    sa.Column("rmse", Real, nullable=True),
    sa.Column("rmsse", Real, nullable=True),
    sa.Column("disparity", Real, nullable=True),
    sa.Column("metrics_json", sa.Text, nullable=True),
    sa.Column("decision_reason", sa.Text, nullable=True),
    sa.Column("request_id", Ident(128), nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("promoted_at", sa.DateTime, nullable=True),
)

ALL_TABLES = tuple(metadata.sorted_tables)

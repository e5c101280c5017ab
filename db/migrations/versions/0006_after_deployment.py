"""predictions, feedback and alerts (issue 12), and each version's training profile for drift.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Frozen copies of the column types as they were at this revision (see 0002).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Double = sa.Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("profile", LongText))
    op.create_table(
        "predictions",
        sa.Column("seq", AutoId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(16), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("features", LongText, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("probabilities", LongText),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("id", name="uq_predictions_id"),
        **MYSQL,
    )
    op.create_index("ix_predictions_version", "predictions", ["model", "dataset", "version", "seq"])
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_table(
        "feedback",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("prediction_id", sa.String(128), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("model", sa.String(16)),
        sa.Column("version", sa.Integer),
        sa.Column("correct", sa.Boolean),
        sa.Column("error", Double),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("joined_at", Timestamp),
        **MYSQL,
    )
    op.create_index("ix_feedback_prediction_id", "feedback", ["prediction_id"])
    op.create_index("ix_feedback_version", "feedback", ["model", "dataset", "version", "status", "position"])
    op.create_index("ix_feedback_status", "feedback", ["status", "position"])
    op.create_table(
        "alerts",
        sa.Column("id", AutoId, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(191), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.String(16), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("prediction_id", sa.String(128)),
        sa.Column("value", Double),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("rule", "subject", name="uq_alerts_rule_subject"),
        **MYSQL,
    )
    op.create_index("ix_alerts_created_at", "alerts", ["created_at"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("feedback")
    op.drop_table("predictions")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("profile")

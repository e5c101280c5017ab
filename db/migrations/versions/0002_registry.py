"""The model registry: versions, builds, aliases, promotions, and the seed's training_log and linear_model.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies of the column types as they were at this revision: a migration must
# not change when db/schema.py changes later.
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
LongBlob = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Double = sa.Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("build_position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("model", sa.String(16), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("metrics", LongText, nullable=False),
        sa.Column("main_metric", Double, nullable=False),
        sa.Column("artifact", LongBlob, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("first_position", sa.BigInteger),
        sa.Column("last_position", sa.BigInteger),
        sa.Column("n_events", sa.BigInteger, nullable=False),
        sa.Column("lineage_digest", sa.String(64), nullable=False),
        sa.Column("versions", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("model", "dataset", "version", name="uq_model_versions_version"),
        sa.UniqueConstraint("uuid", name="uq_model_versions_uuid"),
        **MYSQL,
    )
    op.create_table(
        "builds",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(16), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("version", sa.Integer),
        sa.Column("params", sa.Text),
        sa.Column("n_events", sa.BigInteger),
        sa.Column("requested_at", Timestamp, nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=False),
        sa.Column("load_seconds", Double),
        sa.Column("fit_seconds", Double),
        sa.UniqueConstraint("event_id", name="uq_builds_event_id"),
        **MYSQL,
    )
    op.create_index("ix_builds_model_dataset", "builds", ["model", "dataset"])
    op.create_table(
        "aliases",
        sa.Column("model", sa.String(16), primary_key=True),
        sa.Column("dataset", sa.String(64), primary_key=True),
        sa.Column("alias", sa.String(16), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("moved_at_position", sa.BigInteger, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "promotions",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("model", sa.String(16), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("previous_version", sa.Integer),
        sa.Column("automatic", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", Timestamp, nullable=False),
        **MYSQL,
    )
    # The seed's two tables, as its MySQL schema defined them.
    op.create_table(
        "linear_model",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(255), nullable=False, server_default=sa.text("''")),
        sa.Column("createdate", sa.DateTime),
        sa.Column("slope", Double),
        sa.Column("intercept", Double),
        sa.Column("rsq", Double),
        sa.Column("logoutput", sa.Text),
        **MYSQL,
    )
    op.create_table(
        "training_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(100), nullable=False, server_default=sa.text("''")),
        sa.Column("training_date", sa.DateTime),
        sa.Column("train_eval_split", Double, nullable=False, server_default=sa.text("0.65")),
        sa.Column("execution_time", sa.Integer, nullable=False, server_default=sa.text("-1")),
        sa.Column("model_accuracy", Double, nullable=False, server_default=sa.text("0")),
        sa.Column("training_output", sa.Text),
        sa.Column("model_type", sa.String(50), nullable=False, server_default=sa.text("''")),
        **MYSQL,
    )


def downgrade() -> None:
    for table in ("training_log", "linear_model", "promotions", "aliases", "builds", "model_versions"):
        op.drop_table(table)

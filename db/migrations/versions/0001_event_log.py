"""The event log, dead letters, log head, datasets, handler positions, training records.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the column types as they were at this revision: a migration must
# not change when db/schema.py changes later.
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
LongBlob = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Double = sa.Float(precision=53).with_variant(mysql.DOUBLE(), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _source_columns():
    return [
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("source_topic", sa.String(249)),
        sa.Column("source_topic_id", sa.String(36)),
        sa.Column("source_partition", sa.Integer),
        sa.Column("source_offset", sa.BigInteger),
    ]


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("payload", LongText, nullable=False),
        *_source_columns(),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sa.UniqueConstraint(
            "source_topic", "source_topic_id", "source_partition", "source_offset", name="uq_events_source"
        ),
        **MYSQL,
    )
    op.create_index("ix_events_dataset_name_position", "events", ["dataset", "name", "position"])
    op.create_table(
        "dead_letters",
        sa.Column("id", AutoId, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raw", LongBlob, nullable=False),
        *_source_columns(),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.UniqueConstraint(
            "source_topic", "source_topic_id", "source_partition", "source_offset", name="uq_dead_letters_source"
        ),
        **MYSQL,
    )
    log_head = op.create_table(
        "log_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        **MYSQL,
    )
    op.bulk_insert(log_head, [{"id": 1, "position": 0}])
    op.create_table(
        "datasets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("n_values", sa.Integer, nullable=False),
        sa.Column("first_position", sa.BigInteger),
        sa.Column("created_at", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "handler_positions",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("owner", sa.String(128)),
        sa.Column("lease_expires", Timestamp),
        sa.Column("updated_at", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "training_records",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("features", sa.Text, nullable=False),
        sa.Column("label", Double, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_training_records_dataset_position", "training_records", ["dataset", "position"])


def downgrade() -> None:
    for table in ("training_records", "handler_positions", "datasets", "log_head", "dead_letters", "events"):
        op.drop_table(table)

"""windows over raw events: per-shard watermarks and counters, open windows per key, closed window rows.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Frozen copies of the column types as they were at this revision (see 0002).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "window_shards",
        sa.Column("handler", sa.String(64), primary_key=True),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("watermarks", sa.Text, nullable=False),
        sa.Column("counters", sa.Text, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "window_open",
        sa.Column("handler", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("state", LongText, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "window_rows",
        sa.Column("window", sa.String(64), primary_key=True),
        sa.Column("end_ms", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("start_ms", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("handler", sa.String(64), nullable=False),
        sa.Column("aggregates", LongText, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_window_rows_key", "window_rows", ["window", "key", "start_ms"])


def downgrade() -> None:
    op.drop_index("ix_window_rows_key", table_name="window_rows")
    op.drop_table("window_rows")
    op.drop_table("window_open")
    op.drop_table("window_shards")

"""handler_failures: log events a handler could not apply and moved past, with the reason.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copies of the column types as they were at this revision (see 0002).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "handler_failures",
        sa.Column("handler", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("error", sa.String(64), nullable=False),
        sa.Column("code", sa.String(32)),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("failed_at", Timestamp, nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("handler_failures")

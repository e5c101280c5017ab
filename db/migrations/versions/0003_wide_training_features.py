"""training_records.features as MEDIUMTEXT: a 10,000-value record is ~70 KB of JSON, over TEXT's 64 KiB.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite's TEXT has no such limit: only MySQL's column changes.
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        op.alter_column("training_records", "features", existing_type=sa.Text(), type_=mysql.MEDIUMTEXT(),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        op.alter_column("training_records", "features", existing_type=mysql.MEDIUMTEXT(), type_=sa.Text(),
                        existing_nullable=False)

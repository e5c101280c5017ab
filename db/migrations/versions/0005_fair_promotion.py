"""promotions: the scores an automatic promotion compared on the same test rows, and how many rows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Frozen copy of the column type as it was at this revision (see 0002).
Double = sa.Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("promotions") as batch:
        batch.add_column(sa.Column("candidate_score", Double))
        batch.add_column(sa.Column("production_score", Double))
        batch.add_column(sa.Column("test_rows", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("promotions") as batch:
        batch.drop_column("test_rows")
        batch.drop_column("production_score")
        batch.drop_column("candidate_score")

"""training_records: a typed dataset's category label (label_category), so label may be null.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen copy of the column type as it was at this revision (see 0002).
Double = sa.Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("training_records") as batch:
        batch.alter_column("label", existing_type=Double, nullable=True)
        batch.add_column(sa.Column("label_category", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("training_records") as batch:
        batch.drop_column("label_category")
        batch.alter_column("label", existing_type=Double, nullable=False)

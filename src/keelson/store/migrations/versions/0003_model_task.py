"""model versions record their task; the decision threshold is binary-only

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 00:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(
            sa.Column("task", sa.String(length=16), nullable=False, server_default="binary")
        )
        batch.alter_column("threshold", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.alter_column("threshold", existing_type=sa.Float(), nullable=False)
        batch.drop_column("task")

"""Provenance: the image digest the kubelet reported for each attempt (issue 12)

Revision ID: 0005
Revises: 0003 (written beside the secrets migration 0004; chain it after 0004 when merging)
Create Date: 2026-12-03 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("run_attempts") as batch:
        batch.add_column(sa.Column("image_digest", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_attempts") as batch:
        batch.drop_column("image_digest")

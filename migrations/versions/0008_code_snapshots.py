"""Code snapshots: an org's uploaded working folders and packed git commits (issue 14)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 23:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "code_snapshots",
        sa.Column(
            "org_id",
            sa.String(length=40),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("digest", sa.String(length=71), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.String(length=255), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("git_url", sa.String(length=512), nullable=True),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    # A git source packed once per (org, url, commit): later runs of that commit reuse it.
    op.create_index(
        "ix_code_snapshots_org_id_git", "code_snapshots", ["org_id", "git_url", "git_commit"]
    )


def downgrade() -> None:
    op.drop_index("ix_code_snapshots_org_id_git", table_name="code_snapshots")
    op.drop_table("code_snapshots")

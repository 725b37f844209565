"""Preemption and node-shaped gangs: where an attempt's GPUs sit, who preempted it (issue 20)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # {node: gpus} the grant holds on each node; null for CPU grants and older attempts.
    op.add_column("run_attempts", sa.Column("placement", JSON, nullable=True))
    # Set when the scheduler picks the attempt as a preemption victim: the run that needs it.
    op.add_column("run_attempts", sa.Column("preempted_by", sa.String(length=40), nullable=True))
    op.add_column(
        "run_attempts", sa.Column("preempted_at", sa.DateTime(timezone=True), nullable=True)
    )
    # Structured event details (e.g. the preemptor's run id on a preemption event).
    op.add_column("run_events", sa.Column("data", JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("run_events", "data")
    op.drop_column("run_attempts", "preempted_at")
    op.drop_column("run_attempts", "preempted_by")
    op.drop_column("run_attempts", "placement")

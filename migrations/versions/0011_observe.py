"""The org event log read in version order: indexes for event streams (issue 19)

`GET /v1/events` resumes an org's events after a resource_version, and each API process's event
pump reads every org's events after its position; without these both would scan run_events.
`/metrics` counts active runs by org, status and priority, and the queue's oldest wait: a
partial index of the active runs only (small however many runs have finished) answers both
from the index alone.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ACTIVE = "status IN ('pending', 'queued', 'starting', 'running', 'stopping')"


def upgrade() -> None:
    op.create_index(
        "ix_runs_active",
        "runs",
        ["status", "priority", "org_id", "queued_at"],
        postgresql_where=sa.text(ACTIVE),
        sqlite_where=sa.text(ACTIVE),
    )
    op.create_index("ix_run_events_resource_version", "run_events", ["resource_version"])
    op.create_index(
        "ix_run_events_org_id_resource_version", "run_events", ["org_id", "resource_version"]
    )


def downgrade() -> None:
    op.drop_index("ix_runs_active", table_name="runs")
    op.drop_index("ix_run_events_org_id_resource_version", table_name="run_events")
    op.drop_index("ix_run_events_resource_version", table_name="run_events")

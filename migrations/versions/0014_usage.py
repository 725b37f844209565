"""GPU usage and budgets: a daily rollup of ended attempts, budgets, budget alerts, clones (issue 20)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 04:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_BATCH = 5000


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("org_id", sa.String(length=40), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("project_id", sa.String(length=40), primary_key=True),
        sa.Column("gpu_type", sa.String(length=63), primary_key=True),
        sa.Column("gpu_seconds", sa.Double(), nullable=False),
    )
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column(
            "org_id",
            sa.String(length=40),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.Double(), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("enforcement", sa.String(length=8), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("org_id", "project_id", name="uq_budgets_org_id_project_id"),
    )
    op.create_table(
        "budget_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("budget_id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("spent", sa.Double(), nullable=False),
        sa.Column("amount", sa.Double(), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("enforcement", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "budget_id",
            "generation",
            "period_start",
            "threshold",
            name="uq_budget_alerts_once_per_period",
        ),
    )
    op.create_index("ix_budget_alerts_org_id_id", "budget_alerts", ["org_id", "id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("cloned_from", sa.String(length=40), nullable=True))
    _backfill()


def _backfill() -> None:
    """Roll up the attempts that ended before this migration, as attempts ending now are."""
    bind = op.get_bind()
    attempts = sa.table(
        "run_attempts",
        *(sa.column(name) for name in ("org_id", "project_id", "gpu_type", "gpus")),
        sa.column("started_at", sa.DateTime(timezone=True)),
        sa.column("ended_at", sa.DateTime(timezone=True)),
    )
    rows = bind.execute(
        sa.select(attempts).where(
            attempts.c.gpus > 0,
            attempts.c.started_at.is_not(None),
            attempts.c.ended_at.is_not(None),
        )
    )
    totals: dict[tuple[str, object, str, str], float] = {}
    for row in rows:
        start, end = _aware(row.started_at), _aware(row.ended_at)
        while start < end:
            day = start.date()
            cut = min(end, datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1))
            key = (row.org_id, day, row.project_id, row.gpu_type or "")
            totals[key] = totals.get(key, 0.0) + row.gpus * (cut - start).total_seconds()
            start = cut
    daily = sa.table(
        "usage_daily",
        *(sa.column(name) for name in ("org_id", "day", "project_id", "gpu_type", "gpu_seconds")),
    )
    values = [
        {"org_id": k[0], "day": k[1], "project_id": k[2], "gpu_type": k[3], "gpu_seconds": v}
        for k, v in totals.items()
    ]
    for start in range(0, len(values), BACKFILL_BATCH):
        bind.execute(daily.insert(), values[start : start + BACKFILL_BATCH])


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cloned_from")
    op.drop_index("ix_budget_alerts_org_id_id", table_name="budget_alerts")
    op.drop_table("budget_alerts")
    op.drop_table("budgets")
    op.drop_table("usage_daily")

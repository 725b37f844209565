"""The GPU-usage and budget tables (migration 0014): daily rollups, budgets, their alerts.

Their own module; `core.models` re-exports them (see core/webhooks/models.py).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, utcnow


class UsageDaily(Base):
    """GPU-seconds of ended attempts per UTC day, org, project and GPU type.

    Written in the transaction that ends an attempt (core/usage/rollup.py), so it is exactly the
    closed attempts split at midnight; running attempts are added live when usage is read.
    """

    __tablename__ = "usage_daily"

    org_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    project_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    gpu_type: Mapped[str] = mapped_column(String(63), primary_key=True)  # "" when untyped
    gpu_seconds: Mapped[float] = mapped_column(Double)


class Budget(Base):
    """A spending limit for an org (`project_id` = "") or one project, per month or in total."""

    __tablename__ = "budgets"
    __table_args__ = (
        UniqueConstraint("org_id", "project_id", name="uq_budgets_org_id_project_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(String(40), default="")
    amount: Mapped[float] = mapped_column(Double)
    unit: Mapped[str] = mapped_column(String(16))  # currency | gpu_hours
    period: Mapped[str] = mapped_column(String(16))  # monthly | total
    enforcement: Mapped[str] = mapped_column(String(8))  # soft | hard
    # Bumped by every change of the limit, so its alerts fire again for the new limit.
    generation: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BudgetAlert(Base):
    """A budget crossed 80% or 100% in a period: the event a notification is sent from.

    The unique key makes each (budget, limit generation, period, threshold) fire exactly once,
    however many scheduler passes see it crossed.
    """

    __tablename__ = "budget_alerts"
    __table_args__ = (
        UniqueConstraint(
            "budget_id",
            "generation",
            "period_start",
            "threshold",
            name="uq_budget_alerts_once_per_period",
        ),
        Index("ix_budget_alerts_org_id_id", "org_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    budget_id: Mapped[str] = mapped_column(String(40))
    org_id: Mapped[str] = mapped_column(String(40))
    project_id: Mapped[str] = mapped_column(String(40))
    generation: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[date] = mapped_column(Date)
    threshold: Mapped[int] = mapped_column(Integer)  # percent: 80 or 100
    spent: Mapped[float] = mapped_column(Double)
    amount: Mapped[float] = mapped_column(Double)
    unit: Mapped[str] = mapped_column(String(16))
    enforcement: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

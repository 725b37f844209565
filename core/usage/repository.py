"""Every query of usage: the daily rollup by any grouping, and the attempts running now."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from core.models import Budget, BudgetAlert, Project, RunAttempt, UsageDaily

GROUP_COLUMNS = {
    "project": UsageDaily.project_id,
    "gpu_type": UsageDaily.gpu_type,
    "day": UsageDaily.day,
}


def rolled_up(
    session: Session,
    org_ids: Sequence[str],
    group: str,
    since: date | None,
    until: date | None = None,
    project_id: str | None = None,
) -> Sequence[Row[str, Any, str, float]]:
    """(org, group value, GPU type, GPU-seconds) of ended attempts on days in [since, until).

    One index range per org (the primary key leads with org_id, day) and a grouped sum: a year
    of an org's usage is at most 366 x projects x GPU types rows, however many runs made it.
    """
    column = GROUP_COLUMNS[group]
    query = select(
        UsageDaily.org_id, column, UsageDaily.gpu_type, func.sum(UsageDaily.gpu_seconds)
    ).where(UsageDaily.org_id.in_(list(org_ids)))
    if since is not None:
        query = query.where(UsageDaily.day >= since)
    if until is not None:
        query = query.where(UsageDaily.day < until)
    if project_id is not None:
        query = query.where(UsageDaily.project_id == project_id)
    query = query.group_by(UsageDaily.org_id, column, UsageDaily.gpu_type)
    return session.execute(query).all()


def running_attempts(
    session: Session, org_ids: Sequence[str], project_id: str | None = None
) -> Sequence[RunAttempt]:
    """Attempts of these orgs that hold GPUs and have started, not yet ended: metered live."""
    query = select(RunAttempt).where(
        RunAttempt.ended_at.is_(None),
        RunAttempt.started_at.is_not(None),
        RunAttempt.gpus > 0,
        RunAttempt.org_id.in_(list(org_ids)),
    )
    if project_id is not None:
        query = query.where(RunAttempt.project_id == project_id)
    return session.scalars(query).all()


def project_names(session: Session, org_id: str) -> dict[str, str]:
    rows = session.execute(select(Project.id, Project.name).where(Project.org_id == org_id))
    return {row.id: row.name for row in rows}


def budgets(session: Session, org_id: str | None = None) -> Sequence[Budget]:
    query = select(Budget)
    if org_id is not None:
        query = query.where(Budget.org_id == org_id)
    return session.scalars(query.order_by(Budget.org_id, Budget.project_id)).all()


def get_budget(session: Session, org_id: str, project_id: str) -> Budget | None:
    return session.scalars(
        select(Budget).where(Budget.org_id == org_id, Budget.project_id == project_id)
    ).first()


def alerts(session: Session, org_id: str, project_id: str | None, limit: int) -> Sequence[Any]:
    query = select(BudgetAlert).where(BudgetAlert.org_id == org_id)
    if project_id is not None:
        query = query.where(BudgetAlert.project_id == project_id)
    return session.scalars(query.order_by(BudgetAlert.id.desc()).limit(limit)).all()

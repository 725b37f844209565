"""Every query the scheduler and the quota routes make: queued runs, quotas, names, usage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session, load_only

from core.models import Organization, Project, Quota, Run, RunAttempt, RunProgress
from core.runs.repository import BARE
from core.runs.states import RunStatus


def queued_runs(
    session: Session,
) -> Sequence[Row[tuple[str, str, str, str, datetime, Any, Any]]]:
    """The columns a plan needs of every queued run: no ORM objects, and of the spec only its
    `compute` and `scheduling` parts (a pass may see 10,000; decoding whole specs was a third
    of such a pass: bench/README.md, issue 17's scale check)."""
    return session.execute(
        select(Run.id, Run.org_id, Run.project_id, Run.priority, Run.queued_at)
        .add_columns(Run.spec["compute"].label("compute"))
        .add_columns(Run.spec["scheduling"].label("scheduling"))
        .where(Run.status == RunStatus.QUEUED.value, Run.deleted_at.is_(None))
        .order_by(Run.queued_at, Run.id)
    ).all()


def holdings(session: Session) -> list[tuple[RunAttempt, str, Any, datetime | None]]:
    """Every open attempt with its run's priority, spec `scheduling` part and running start
    (for preemption and the queue's ETA)."""
    rows = session.execute(
        select(RunAttempt, Run.priority, Run.spec["scheduling"], Run.started_at)
        .join(Run, Run.id == RunAttempt.run_id)
        .where(RunAttempt.ended_at.is_(None))
    ).all()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def estimated_finishes(session: Session) -> dict[str, datetime]:
    """When each open attempt's runtime says it will finish (its step rate), where it says."""
    open_attempt = (
        (RunAttempt.run_id == RunProgress.run_id)
        & (RunAttempt.attempt == RunProgress.attempt)
        & RunAttempt.ended_at.is_(None)
    )
    rows = session.scalars(
        select(RunProgress)
        .join(RunAttempt, open_attempt)
        .options(
            load_only(
                RunProgress.attempt, RunProgress.step, RunProgress.total_steps,
                RunProgress.last_heartbeat_at, RunProgress.rate_step, RunProgress.rate_at,
            )
        )
    )  # fmt: skip
    return {row.run_id: finish for row in rows if (finish := row.estimated_finish) is not None}


def any_waiting(session: Session) -> bool:
    """Whether a run waits for admission (pending or queued): one row of an index."""
    waiting = [RunStatus.PENDING.value, RunStatus.QUEUED.value]
    return session.scalar(select(Run.id).where(Run.status.in_(waiting)).limit(1)) is not None


def lock_runs(
    session: Session, status: RunStatus, ids: Sequence[str] | None = None, limit: int = 1000
) -> Sequence[Run]:
    """Runs still in `status`, locked; rows another transaction holds are skipped, not awaited."""
    query = select(Run).options(*BARE).where(Run.status == status.value, Run.deleted_at.is_(None))
    if ids is not None:
        query = query.where(Run.id.in_(list(ids)))
    query = query.order_by(Run.id).limit(limit).with_for_update(skip_locked=True)
    return session.scalars(query).all()


def quotas(session: Session, org_id: str | None = None) -> Sequence[Quota]:
    query = select(Quota)
    if org_id is not None:
        query = query.where(Quota.org_id == org_id)
    return session.scalars(query.order_by(Quota.org_id, Quota.project_id)).all()


def get_quota(session: Session, org_id: str, project_id: str) -> Quota | None:
    return session.get(Quota, (org_id, project_id))


def org_names(session: Session, ids: Sequence[str]) -> dict[str, str]:
    rows = session.execute(
        select(Organization.id, Organization.name).where(Organization.id.in_(ids))
    )
    return {row.id: row.name for row in rows}


def project_names(session: Session, ids: Sequence[str]) -> dict[str, str]:
    rows = session.execute(select(Project.id, Project.name).where(Project.id.in_(ids)))
    return {row.id: row.name for row in rows}


def held_by(session: Session, org_id: str) -> dict[str, tuple[int, int]]:
    """GPUs and attempts held now by each project of the org, by project id."""
    rows = session.execute(
        select(RunAttempt.project_id, func.sum(RunAttempt.gpus), func.count())
        .where(RunAttempt.org_id == org_id, RunAttempt.ended_at.is_(None))
        .group_by(RunAttempt.project_id)
    )
    return {row[0]: (int(row[1] or 0), int(row[2])) for row in rows}

""" "Why is my run pending": the queue position and blocker of a run that has not started.

It runs the scheduler's own plan over the current state, read-only, so the answer is the one
the next pass would act on: `quota_exhausted` ("16 of 16 GPUs of org acme in use"),
`no_capacity` ("needs 8 x a100, largest free 4"), `reserved` (held for a starved run), or
`ready` (it fits; the next pass starts it).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.models import Run, utcnow
from core.runs.schemas import QueueInfo
from core.runs.states import RunStatus
from core.scheduling.planner import QueueReason, plan_admissions
from core.scheduling.snapshot import load_snapshot
from core.settings import Settings

# A pending run's answer needs no plan: the scheduler has not accepted it yet.
SUBMITTED = QueueInfo(
    position=None,
    reason=QueueReason.SUBMITTED.value,
    detail="submitted; the scheduler accepts it into the queue at its next pass",
)


def explain(session: Session, run: Run, settings: Settings) -> QueueInfo | None:
    """Queue details for a pending or queued run; None for any other status."""
    status = RunStatus(run.status)
    if status is RunStatus.PENDING:
        return SUBMITTED
    if status is not RunStatus.QUEUED:
        return None
    plan = plan_admissions(load_snapshot(session, settings, utcnow()))
    blocker = plan.blocked.get(run.id)
    if blocker is None:
        detail = "it fits now; the scheduler's next pass starts it"
        return QueueInfo(
            position=plan.position(run.id), reason=QueueReason.READY.value, detail=detail
        )
    return QueueInfo(
        position=plan.position(run.id), reason=blocker.reason.value, detail=blocker.detail
    )

"""The task-delivery ledger: how often a worker task ran for one attempt, and whether it finished.

The outbox (core/outbox.py) hands a task to the broker at least once; a worker that receives it
counts the delivery here, committed before the work starts, so a task that keeps killing its
worker is seen (its count only grows) and one already finished is not done twice. The reconciler
also notes here when it asked for a task again, so its re-drives are spaced out.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import TaskDelivery, utcnow
from core.outbox import Task


def _delivery(session: Session, task: Task, run_id: str, attempt: int) -> TaskDelivery:
    key = (task.value, run_id, attempt)
    row = session.get(TaskDelivery, key, with_for_update=True)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = TaskDelivery(task=task.value, run_id=run_id, attempt=attempt, deliveries=0)
            session.add(row)
        return row
    except IntegrityError:  # a concurrent delivery created it: use (and lock) that one
        return _delivery(session, task, run_id, attempt)


def record_delivery(session: Session, task: Task, run_id: str, attempt: int) -> int | None:
    """Count one more delivery of `task` for (run, attempt), committed before the work starts.

    Returns how many deliveries there have been, or None when an earlier one already finished
    the work. A task that keeps killing its worker never finishes, so its count only grows.
    """
    row = _delivery(session, task, run_id, attempt)
    if row.completed_at is not None:
        return None
    row.deliveries += 1
    row.updated_at = utcnow()
    session.flush()
    return row.deliveries


def complete_delivery(session: Session, task: Task, run_id: str, attempt: int) -> None:
    """Mark the work of `task` for (run, attempt) as finished: later deliveries skip it."""
    row = _delivery(session, task, run_id, attempt)
    row.completed_at = row.completed_at or utcnow()
    session.flush()


def note_redrive(session: Session, task: Task, run_id: str, attempt: int) -> None:
    """Remember that `task` was just asked for again, so re-drives are spaced out."""
    _delivery(session, task, run_id, attempt).updated_at = utcnow()
    session.flush()


def delivery_state(session: Session, task: Task, run_id: str, attempt: int) -> TaskDelivery | None:
    """The ledger row of `task` for (run, attempt), if it was ever delivered."""
    return session.get(TaskDelivery, (task.value, run_id, attempt))

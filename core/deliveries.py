"""The task-delivery ledger: how often a worker task ran for one attempt, and whether it finished.

The outbox (core/outbox.py) hands a task to the broker at least once; a worker that receives it
counts the delivery here, committed before the work starts, so a task that keeps killing its
worker is seen (its count only grows) and one already finished is not done twice. The reconciler
also notes here when it asked for a task again, so its re-drives are spaced out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.models import TaskDelivery, utcnow
from core.outbox import Task


def _upsert(session: Session, **values: Any) -> postgresql.Insert | sqlite.Insert:
    """`INSERT ... ON CONFLICT (task, run_id, attempt)` in the session's dialect: one statement,
    which creates the ledger row or takes the lock of the one there (a concurrent delivery waits
    for it), where a locked read, a savepoint and an insert took four round trips."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(TaskDelivery).values(**values)
    return sqlite.insert(TaskDelivery).values(**values)


def _key(task: Task, run_id: str, attempt: int) -> dict[str, Any]:
    return {"task": task.value, "run_id": run_id, "attempt": attempt}


def record_delivery(session: Session, task: Task, run_id: str, attempt: int) -> int | None:
    """Count one more delivery of `task` for (run, attempt), committed before the work starts.

    Returns how many deliveries there have been, or None when an earlier one already finished
    the work. A task that keeps killing its worker never finishes, so its count only grows.
    """
    now = utcnow()
    key = _key(task, run_id, attempt)
    statement = _upsert(session, **key, deliveries=1, updated_at=now)
    counted = statement.on_conflict_do_update(
        index_elements=list(key),
        set_={"deliveries": TaskDelivery.deliveries + 1, "updated_at": now},
        where=TaskDelivery.completed_at.is_(None),  # done: the row is left as it is
    ).returning(TaskDelivery.deliveries)
    return session.execute(counted).scalar()


def complete_delivery(session: Session, task: Task, run_id: str, attempt: int) -> None:
    """Mark the work of `task` for (run, attempt) as finished: later deliveries skip it."""
    now = utcnow()
    key = _key(task, run_id, attempt)
    statement = _upsert(session, **key, deliveries=0, completed_at=now, updated_at=now)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=list(key),
            set_={"completed_at": func.coalesce(TaskDelivery.completed_at, now)},
        )
    )


def note_redrive(session: Session, task: Task, run_id: str, attempt: int) -> None:
    """Remember that `task` was just asked for again, so re-drives are spaced out."""
    now = utcnow()
    key = _key(task, run_id, attempt)
    statement = _upsert(session, **key, deliveries=0, updated_at=now)
    session.execute(
        statement.on_conflict_do_update(index_elements=list(key), set_={"updated_at": now})
    )


def delivery_state(session: Session, task: Task, run_id: str, attempt: int) -> TaskDelivery | None:
    """The ledger row of `task` for (run, attempt), if it was ever delivered."""
    return session.get(TaskDelivery, (task.value, run_id, attempt))

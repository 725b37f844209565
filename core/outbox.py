"""The transactional outbox: tasks for the workers, written in the same transaction as the change.

The API never talks to the broker. A change that needs a worker (a run created, a run to stop,
an attempt to launch) adds an outbox row beside it; once the transaction commits, a relay
(workers/relay.py) publishes the row at least once and marks it sent. If the broker is down the
rows wait, and nothing the user sees fails. Tasks are named here, as strings, so core and api
hand work over without importing the workers.

Relays claim rows with `FOR UPDATE SKIP LOCKED` and a short lease (`claimed_until`), publish
outside any transaction, then mark them sent: several relays never block one another, and a
relay that dies mid-publish only delays its rows until the lease runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from core.models import OutboxMessage, utcnow

CHANNEL = "trainport_outbox"
_SESSION_KEY = "trainport.outbox_written"


class Task(StrEnum):
    """Every task the workers accept, by its Celery name."""

    SCHEDULE = "trainport.schedule"  # accept pending runs, then an admission pass
    LAUNCH = "trainport.launch"  # start one attempt: {run_id, attempt}
    STOP = "trainport.stop"  # stop a cancelled run's attempt: {run_id}
    RECONCILE = "trainport.reconcile"  # compare runs with what the executors see
    PRUNE = "trainport.prune_outbox"  # forget rows sent long ago
    DELIVER_WEBHOOKS = "trainport.deliver_webhooks"  # send due webhook deliveries


@dataclass(frozen=True)
class Claimed:
    id: int
    task: str
    payload: dict[str, Any]


def enqueue(session: Session, task: Task, **payload: Any) -> None:
    """Ask the workers to run `task` once this transaction commits."""
    session.add(OutboxMessage(task=task.value, payload=payload, created_at=utcnow()))
    session.info[_SESSION_KEY] = True


def claim(session: Session, limit: int, lease_seconds: float) -> list[Claimed]:
    """Unsent rows nobody else holds, oldest first, leased to the caller for `lease_seconds`."""
    now = utcnow()
    rows = session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.sent_at.is_(None),
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.claimed_until = now + timedelta(seconds=lease_seconds)
    session.flush()
    return [Claimed(row.id, row.task, dict(row.payload)) for row in rows]


def mark_sent(session: Session, ids: Sequence[int]) -> None:
    if ids:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(list(ids)))
            .values(sent_at=utcnow(), claimed_until=None)
            .execution_options(synchronize_session=False)
        )


def release(session: Session, ids: Sequence[int]) -> None:
    """Give rows back unsent (the broker refused them) so the next drain retries at once."""
    if ids:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(list(ids)), OutboxMessage.sent_at.is_(None))
            .values(claimed_until=None)
            .execution_options(synchronize_session=False)
        )


def unsent_count(session: Session) -> int:
    query = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
    return int(session.scalar(query) or 0)


def prune(session: Session, sent_before: datetime) -> int:
    result = session.execute(delete(OutboxMessage).where(OutboxMessage.sent_at < sent_before))
    return int(result.rowcount)  # type: ignore[attr-defined]


@sa_event.listens_for(Session, "before_commit")
def _notify_relays(session: Session) -> None:
    # On PostgreSQL the relays LISTEN; NOTIFY is delivered only if this transaction commits.
    if session.info.pop(_SESSION_KEY, False) and session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


@sa_event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_SESSION_KEY, None)

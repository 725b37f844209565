"""The transactional outbox: tasks for the workers, written in the same transaction as the change.

The API never talks to the broker. A change that needs a worker (a run created, a run to stop,
an attempt to launch) adds an outbox row beside it; once the transaction commits, a relay
(workers/relay.py) publishes the row at least once and marks it sent. If the broker is down the
rows wait, and nothing the user sees fails. Tasks are named here, as strings, so core and api
hand work over without importing the workers.

Relays claim rows with `FOR UPDATE SKIP LOCKED` and a short lease (`claimed_until`), publish
outside any transaction, then mark them sent: several relays never block one another, and a
relay that dies mid-publish only delays its rows until the lease runs out.

A commit that wrote rows wakes the relays: on PostgreSQL with `NOTIFY` (delivered only if it
commits); on SQLite, which carries nothing between processes, with an empty datagram to an
abstract Unix socket named after the database file (`wake_address`), sent after the commit.
Either is a hint only: a relay that missed it finds the rows on its next poll.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
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
_WAKE_KEY = "trainport.outbox_wake"  # the SQLite database to wake the relay of, after commit


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


def anything_to_claim(session: Session) -> bool:
    """Whether a row is unsent and unleased: one index row, read before a claim's write."""
    now = utcnow()
    found = session.scalar(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.sent_at.is_(None),
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
        )
        .limit(1)
    )
    return found is not None


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


def wake_address(database: str) -> str:
    """The SQLite relay's wake-up socket for `database` (a file path): an abstract name, so
    there is no file to clean up and no path-length limit; processes sharing the file (and a
    network namespace, as the API and the embedded workers do) agree on it."""
    digest = hashlib.sha256(os.path.realpath(database).encode()).hexdigest()[:32]
    return f"\0trainport-outbox-{digest}"


def wake_relay(database: str) -> None:
    """Tell the relay of `database` that rows are waiting; nobody listening is not an error."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        # No relay bound yet, or its queue is full (then it is awake): either way it will look.
        with contextlib.suppress(OSError):
            sender.sendto(b"", wake_address(database))


@sa_event.listens_for(Session, "before_commit")
def _notify_relays(session: Session) -> None:
    if not session.info.pop(_SESSION_KEY, False):
        return
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":  # the relays LISTEN; delivered only if this commits
        session.execute(text(f"NOTIFY {CHANNEL}"))
    elif bind.dialect.name == "sqlite" and bind.engine.url.database not in (None, "", ":memory:"):
        session.info[_WAKE_KEY] = bind.engine.url.database


@sa_event.listens_for(Session, "after_commit")
def _wake_sqlite_relay(session: Session) -> None:
    database = session.info.pop(_WAKE_KEY, None)
    if database:
        wake_relay(database)


@sa_event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_SESSION_KEY, None)
    session.info.pop(_WAKE_KEY, None)

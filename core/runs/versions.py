"""Hands out resource versions: one global counter that every change to any run bumps.

Why a counter row and not a SEQUENCE: sequence values are handed out in call order but become
visible in commit order, so a change-feed reader that saw version N could later miss a slower
transaction holding N-1. Incrementing a single row takes its row lock until commit, so versions
become visible strictly in the order they are handed out and `changed_since=N` never skips one.
Writers serialise only on the short tail of their transactions: claim the version last.
The claim also queues a change notification, sent only once the transaction commits.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from core.models import VersionCounter
from core.notify import record_change

RUNS_COUNTER = "runs"


def claim_resource_version(session: Session, run_id: str) -> int:
    """The next run resource_version, owned by this transaction until it commits."""
    value = session.execute(
        update(VersionCounter)
        .where(VersionCounter.name == RUNS_COUNTER)
        .values(value=VersionCounter.value + 1)
        .returning(VersionCounter.value)
    ).scalar_one()
    record_change(session, run_id)
    return int(value)

"""Reads of the event log: run events with their run's filterable fields, in version order.

Every event is written in the transaction that claims its resource_version
(core/runs/versions.py), and the counter row stays locked until that transaction commits, so
every event at or below the committed counter value is visible: reading `(after, upto]` with
`upto` read first never skips a writer that commits late, exactly as the change feed does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from core.models import Run, RunEvent
from core.runs.repository import current_version

_COLUMNS = (
    RunEvent.id,
    RunEvent.run_id,
    RunEvent.org_id,
    RunEvent.kind,
    RunEvent.from_status,
    RunEvent.to_status,
    RunEvent.reason,
    RunEvent.message,
    RunEvent.resource_version,
    RunEvent.actor,
    RunEvent.created_at,
    Run.project_id,
    Run.name.label("run_name"),
    Run.labels.label("run_labels"),
    Run.status.label("run_status"),
    Run.created_at.label("run_created_at"),
)


@dataclass(frozen=True)
class Event:
    """One run event, and what the run list's filters look at on its run."""

    id: int
    run_id: str
    org_id: str
    kind: str
    from_status: str | None
    to_status: str | None
    reason: str | None
    message: str | None
    resource_version: int
    actor: str | None
    created_at: datetime
    project_id: str
    run_name: str
    run_labels: dict[str, Any]
    run_status: str
    run_created_at: datetime


def _events(scope: str | None) -> Select[Any]:
    query = (
        select(*_COLUMNS)
        .join(Run, Run.id == RunEvent.run_id)
        .where(
            RunEvent.resource_version > bindparam("after"),
            RunEvent.resource_version <= bindparam("upto"),
        )
    )
    if scope == "org":
        query = query.where(RunEvent.org_id == bindparam("org_id"))
    elif scope == "run":
        query = query.where(RunEvent.run_id == bindparam("run_id"))
    return query.order_by(RunEvent.resource_version, RunEvent.id).limit(bindparam("rows"))


# Built once with named parameters: the pump and every stream's catch-up run these often.
ALL_EVENTS = _events(None)
ORG_EVENTS = _events("org")
RUN_EVENTS = _events("run")


@dataclass(frozen=True)
class EventBatch:
    """Events in (after, upto], oldest first; `position` is where the next read starts."""

    events: Sequence[Event]
    position: int
    more: bool


def read_events(
    session: Session,
    after: int,
    limit: int,
    *,
    org_id: str | None = None,
    run_id: str | None = None,
) -> EventBatch:
    """Up to `limit` events after version `after`: every org's, one org's, or one run's."""
    upto = current_version(session)
    query = RUN_EVENTS if run_id else ORG_EVENTS if org_id else ALL_EVENTS
    params = {"after": after, "upto": upto, "rows": limit + 1, "org_id": org_id, "run_id": run_id}
    rows = session.execute(query, params).mappings().all()
    events = [Event(**row) for row in rows[:limit]]
    more = len(rows) > limit
    # Each version has at most one event (each is written with the version it claimed), so a
    # full page may stop at its last version; otherwise everything up to `upto` has been read.
    position = events[-1].resource_version if more else max(upto, after)
    return EventBatch(events, position, more)

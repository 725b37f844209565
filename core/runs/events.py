"""A run's history rows: the one place a `run_events` row is laid out and recorded.

Every kind of event goes through `event_row` (its columns) and `emit` (into the session): the
state machine's status changes (core/runs/states.py), the services' edits and deletions
(core/runs/service.py), the scheduler's warnings (core/scheduling/admission.py), and a new run's
`created` event, which `creation.new_run` lays out here and which reaches the table either through
`emit` (the ORM) or as the parameters of the one create statement (core/runs/creation.py).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from core.models import Run, RunEvent, utcnow


class EventKind(StrEnum):
    CREATED = "created"  # submitted (`POST /v1/runs`)
    STATUS = "status"  # a status change (core/runs/states.py)
    UPDATED = "updated"  # a user's edit (`PATCH /v1/runs/{id}`)
    DELETED = "deleted"  # a user's deletion
    WARNING = "warning"  # something the user should know, without a status change
    CLONED = "cloned"  # a new run made from another's spec (`POST /v1/runs/{id}/clone`)
    CHECKPOINT = "checkpoint"  # a checkpoint recorded (core/runs/service.py)
    PREEMPTION = "preemption"  # a preemption decision, on the victim and the preemptor


# A row's columns, in the order the create statement binds them; resource_version is the
# database's there (it is claimed in the same statement). A created event has no `data`.
EVENT_FIELDS = (
    "run_id",
    "org_id",
    "kind",
    "from_status",
    "to_status",
    "reason",
    "message",
    "actor",
    "created_at",
)


def event_row(
    run_id: str,
    org_id: str,
    kind: EventKind,
    *,
    resource_version: int | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
    message: str | None = None,
    actor: str | None = None,
    created_at: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One `run_events` row's values, every column named (resource_version only when known)."""
    row: dict[str, Any] = {
        "run_id": run_id,
        "org_id": org_id,
        "kind": kind.value,
        "from_status": from_status,
        "to_status": to_status,
        "reason": reason,
        "message": message,
        "actor": actor,
        "created_at": created_at or utcnow(),
        "data": data,  # structured details (a preemption names its preemptor); not in EVENT_FIELDS
    }
    if resource_version is not None:
        row["resource_version"] = resource_version
    return row


def emit(session: Session, row: dict[str, Any]) -> None:
    """Add an `event_row` to the session's unit of work (the caller flushes or commits)."""
    session.add(RunEvent(**row))


def emit_for(session: Session, run: Run, kind: EventKind, **fields: Any) -> None:
    """Record an event of `run` at its current resource_version (or the one in `fields`)."""
    fields.setdefault("resource_version", run.resource_version)
    emit(session, event_row(run.id, run.org_id, kind, **fields))

"""Which changes become webhook events, and `emit`: the one writer of webhook deliveries.

A change that users may want pushed to them (core/runs/states.py's transitions, a new run, a
committed checkpoint, an endpoint disabled) calls `emit` in its own transaction: one delivery
row per matching endpoint (enabled, of the org, org-wide or of the event's project, whose
`event_types` is empty or names the event), plus one outbox task per transaction that wakes a
worker to send them. Rows and change commit or vanish together, so an event is never lost and
never sent for a change that rolled back; the beat-driven sweep finds any delivery whose task
was lost. `created_statement_parts` does the same inside the one-statement run creation of
core/runs/creation.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from typing import cast as typed
from uuid import uuid4

from sqlalchemy import (
    Table,
    Text,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import CTE

from core import outbox
from core.models import OutboxMessage, Run, WebhookDelivery, WebhookEndpoint, utcnow
from core.webhooks.schemas import DeliveryStatus, EventType

_WOKEN = "trainport.webhooks_woken"  # session.info: this transaction already asked a worker
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def new_delivery_id() -> str:
    return f"msg_{uuid4().hex}"


def body(event: EventType, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    """The JSON body every receiver gets: `{type, timestamp, data}`."""
    return {"type": event.value, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data}


def wants(endpoint_types: list[str], event: EventType) -> bool:
    return not endpoint_types or event.value in endpoint_types


def emit(
    session: Session,
    org_id: str,
    project_id: str | None,
    event: EventType,
    data: dict[str, Any],
) -> int:
    """Queue `event` for every endpoint that wants it, in the caller's transaction; how many."""
    return emit_all(session, org_id, project_id, [(event, data)])


def emit_all(
    session: Session,
    org_id: str,
    project_id: str | None,
    happened: list[tuple[EventType, dict[str, Any]]],
) -> int:
    """`emit` for several events of one change, reading the org's endpoints once."""
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
            WebhookEndpoint.org_id == org_id,
            WebhookEndpoint.enabled.is_(True),
            or_(WebhookEndpoint.project_id.is_(None), WebhookEndpoint.project_id == project_id),
        )
    ).all()
    queued = 0
    for event, data in happened:
        targets = [endpoint_id for endpoint_id, types in endpoints if wants(types, event)]
        if targets:
            queued += len(queue(session, org_id, targets, event, data))
    return queued


def queue(
    session: Session, org_id: str, endpoint_ids: list[str], event: EventType, data: dict[str, Any]
) -> list[str]:
    """One pending delivery of `event` per endpoint, due now; their ids."""
    now = utcnow()
    document = body(event, data, now)
    rows: list[dict[str, Any]] = [
        {
            "id": new_delivery_id(),
            "endpoint_id": endpoint_id,
            "org_id": org_id,
            "event_type": event.value,
            "payload": document,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for endpoint_id in endpoint_ids
    ]
    session.execute(insert(WebhookDelivery), rows)
    wake_worker(session)
    return [row["id"] for row in rows]


def wake_worker(session: Session) -> None:
    """One `deliver_webhooks` task per transaction, however many events it emitted."""
    if not session.info.get(_WOKEN):
        outbox.enqueue(session, outbox.Task.DELIVER_WEBHOOKS)
        session.info[_WOKEN] = True


@sa_event.listens_for(Session, "after_commit")
@sa_event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_WOKEN, None)


# -- what each change sends -----------------------------------------------------------------


RUN_FIELDS = ("id", "name", "project_id", "status", "status_reason", "attempt")


def run_data(run: Run) -> dict[str, Any]:
    return {name: getattr(run, name) for name in RUN_FIELDS}


def status_changed(
    session: Session, run: Run, before: str, reason: str, message: str | None, version: int
) -> None:
    """A transition's events: the change itself, a finish, an attempt's start or end."""
    change = {"from": before, "to": run.status, "reason": reason, "message": message}
    data = {"run": run_data(run), "change": change, "resource_version": version}
    happened = [EventType.RUN_STATUS_CHANGED]
    if run.status in TERMINAL:
        happened.append(EventType.RUN_FINISHED)
    if run.status == "starting" and before == "queued":
        happened.append(EventType.ATTEMPT_STARTED)
    if before in {"starting", "running", "stopping"} and run.status not in {"running", "stopping"}:
        happened.append(EventType.ATTEMPT_ENDED)
    emit_all(session, run.org_id, run.project_id, [(event, data) for event in happened])


def run_preempted(session: Session, victim: Run, attempt: int, preemptor_id: str) -> None:
    data = {"run": run_data(victim), "attempt": attempt, "preempted_by": preemptor_id}
    emit(session, victim.org_id, victim.project_id, EventType.RUN_PREEMPTED, data)


def run_created(session: Session, run: Run) -> None:
    emit(session, run.org_id, run.project_id, EventType.RUN_CREATED, {"run": run_data(run)})


# -- inside core/runs/creation.py's one statement (PostgreSQL) --------------------------------


def created_statement_parts(run: CTE, *, org: Any, project: Any, document: Any) -> list[CTE]:
    """CTEs that queue `run.created` for the new run (`run`: the CTE that inserted it).

    `org`, `project`, `document` are the statement's bound org id, project id and JSON body.
    """
    endpoints = typed(Table, WebhookEndpoint.__table__)
    deliveries = typed(Table, WebhookDelivery.__table__)
    types = cast(endpoints.c.event_types, JSONB)
    now = func.now()
    chosen = (
        select(
            literal("msg_") + func.replace(cast(func.gen_random_uuid(), Text), "-", ""),
            endpoints.c.id,
            org,
            literal(EventType.RUN_CREATED.value),
            document,
            literal(DeliveryStatus.PENDING.value),
            literal(0),
            now,
            now,
            now,
        )
        .select_from(run)
        .join(endpoints, literal(True))
        .where(
            endpoints.c.org_id == org,
            endpoints.c.enabled.is_(True),
            or_(endpoints.c.project_id.is_(None), endpoints.c.project_id == project),
            or_(
                func.jsonb_array_length(types) == 0,
                types.contains([EventType.RUN_CREATED.value]),
            ),
        )
    )
    columns = ["id", "endpoint_id", "org_id", "event_type", "payload", "status", "attempts"]
    columns += ["next_attempt_at", "created_at", "updated_at"]
    added = insert(deliveries).from_select(columns, chosen).returning(deliveries.c.id).cte("hooks")
    tasks = typed(Table, OutboxMessage.__table__)
    wake = insert(tasks).from_select(
        ["task", "payload", "created_at"],
        select(
            literal(outbox.Task.DELIVER_WEBHOOKS.value),
            cast(literal("{}"), JSONB),
            now,
        ).where(exists(select(added.c.id))),
    )
    return [added, wake.cte("hook_task")]

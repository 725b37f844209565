"""A new run's rows: laid out once, written by the ORM or, on PostgreSQL, by one statement.

`new_run` decides everything a new run is made of (its id, generated name, spec document, labels,
status, the `created` event) except its resource_version, which only the database hands out.
Two writers use that layout: `service.create_run` through the ORM in the caller's transaction
(SQLite, and `TRAINPORT_ASYNC_READS=false`), and `create_async` from the event loop on
PostgreSQL, in one statement, with or without an Idempotency-Key (a replay of a key already
taken goes back to `service.create_run`).

Why one statement: a create claims the `runs` version counter, whose row lock it keeps until it
commits (core/runs/versions.py), so concurrent creates take turns for the whole tail of their
transactions. Through the ORM that tail is five round trips plus the commit, each one waiting
for a worker thread's turn at the GIL; every create in the queue waits for all of it. As one
data-modifying statement in autocommit, the lock is held for one round trip: the statement's
own execution and its commit.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from typing import cast as typed

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Select,
    Text,
    bindparam,
    cast,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import String as SAString
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.schema import Column, Table

from core import idempotency, notify, outbox
from core.ids import new_id
from core.models import (
    IdempotencyRecord,
    OutboxMessage,
    Run,
    RunEvent,
    RunLabel,
    VersionCounter,
    utcnow,
)
from core.runs.events import EVENT_FIELDS, EventKind, event_row
from core.runs.schemas import SUBMITTED, RunOut
from core.runs.spec import RunCreate
from core.runs.states import RunStatus, StatusReason
from core.runs.versions import RUNS_COUNTER
from core.runs.waiting import WaitingRoom
from core.settings import Settings
from core.tenants import service as tenants
from core.tenants.repository import PROJECT_ID
from core.tenants.schemas import Principal, Role
from core.webhooks import events as webhook_events
from core.webhooks.schemas import EventType

if TYPE_CHECKING:  # asyncpg only where the API runs on PostgreSQL, not in every worker
    from core.aio import AsyncDatabase

# The columns `new_run` fills; resource_version is the database's.
RUN_FIELDS = (
    "id",
    "org_id",
    "project_id",
    "name",
    "spec",
    "status",
    "status_reason",
    "status_message",
    "priority",
    "attempt",
    "labels",
    "created_by",
    "created_at",
    "updated_at",
    "queued_at",
    "started_at",
    "finished_at",
)
RECORD_FIELDS = ("org_id", "key", "request_hash", "run_id", "created_at", "expires_at")


@dataclass(frozen=True)
class NewRun:
    run: dict[str, Any]  # the `runs` row, by RUN_FIELDS
    labels: dict[str, str]
    event: dict[str, Any]  # its `created` event (`core.runs.events.event_row`), by EVENT_FIELDS


def new_run(
    caller: Principal, body: RunCreate, project_id: str, run_id: str | None = None
) -> NewRun:
    """What a new run is made of; the caller has checked the key's role and the project."""
    spec = body.model_dump(mode="json", exclude={"project"})
    spec["name"] = spec["name"] or f"{body.recipe or 'run'}-{secrets.token_hex(3)}"
    run_id = run_id or new_id("run")
    now = utcnow()
    run = {
        "id": run_id,
        "org_id": caller.org_id,
        "project_id": project_id,
        "name": spec["name"],
        "spec": spec,
        "status": RunStatus.PENDING.value,
        "status_reason": StatusReason.SUBMITTED.value,
        "status_message": None,
        "priority": body.scheduling.priority.value,
        "attempt": 0,
        "labels": dict(body.labels),
        "created_by": caller.key_id,
        "created_at": now,
        "updated_at": now,
        "queued_at": None,
        "started_at": None,
        "finished_at": None,
    }
    event = event_row(
        run_id,
        caller.org_id,
        EventKind.CREATED,
        to_status=RunStatus.PENDING.value,
        actor=caller.key_id,
        created_at=now,
    )
    return NewRun(run, dict(body.labels), event)


def document(new: NewRun, resource_version: int) -> RunOut:
    """The new run as the API shows it: no attempts or progress yet, waiting to be accepted."""
    fields = {**new.run, "resource_version": resource_version, "attempts": [], "queue": SUBMITTED}
    return RunOut.model_validate(fields)


def _bound(column: Column[Any], name: str) -> ColumnElement[Any]:
    """A parameter typed as its column, so PostgreSQL knows what asyncpg must send.

    Strings are cast to text, not to varchar(n): a cast would cut an over-long value short,
    where the insert itself refuses it.
    """
    target = Text() if isinstance(column.type, SAString) else column.type
    return cast(bindparam(name), target)


def _one_statement(idempotent: bool) -> Select[Any]:
    """Claim a version, insert the run, its labels, event and outbox task, and notify: at once.

    Parameters: `run_<field>` for RUN_FIELDS, `event_<field>` for EVENT_FIELDS, `label_keys`
    and `label_values` (same length), and the outbox row's `task`, `payload` and `created_at`.

    `idempotent`: first claim the Idempotency-Key (`key_<field>`, `idempotency.record_values`)
    by inserting its record, or taking over an expired one; the rest happens only when the
    claim did. A live record of another request leaves the statement with no row. A concurrent
    request with the same key waits at the claim for the other's commit and then finds the key
    taken. Every create takes the key's lock before the counter's, so none deadlock.
    """
    runs, events, labels, tasks, records = (
        typed(Table, model.__table__)
        for model in (Run, RunEvent, RunLabel, OutboxMessage, IdempotencyRecord)
    )
    version_update = (
        update(VersionCounter)
        .where(VersionCounter.name == RUNS_COUNTER)
        .values(value=VersionCounter.value + 1)
    )
    if idempotent:
        record = {name: _bound(records.c[name], f"key_{name}") for name in RECORD_FIELDS}
        claim_key = (
            pg_insert(records)
            .from_select(list(record), select(*record.values()))
            .on_conflict_do_update(
                index_elements=[records.c.org_id, records.c.key],
                set_={name: record[name] for name in RECORD_FIELDS[2:]},  # all but the key
                where=records.c.expires_at <= record["created_at"],
            )
            .returning(records.c.run_id)
            .cte("claim")
        )
        version_update = version_update.where(select(claim_key.c.run_id).exists())
    version = version_update.returning(VersionCounter.value).cte("version")
    run_values = [_bound(runs.c[name], f"run_{name}") for name in RUN_FIELDS]
    run = (
        insert(runs)
        .from_select([*RUN_FIELDS, "resource_version"], select(*run_values, version.c.value))
        .returning(runs.c.id, runs.c.resource_version)
        .cte("run")
    )
    pairs = (
        func.unnest(
            cast(bindparam("label_keys"), ARRAY(Text())),
            cast(bindparam("label_values"), ARRAY(Text())),
        )
        .table_valued("key", "value")
        .render_derived(name="pairs")
    )
    label_rows = select(run.c.id, _bound(labels.c.org_id, "run_org_id"), pairs.c.key, pairs.c.value)
    add_labels = insert(labels).from_select(["run_id", "org_id", "key", "value"], label_rows)
    event_values = [_bound(events.c[name], f"event_{name}") for name in EVENT_FIELDS]
    event_select = select(*event_values, run.c.resource_version)
    add_event = insert(events).from_select([*EVENT_FIELDS, "resource_version"], event_select)
    task = [_bound(tasks.c[name], name) for name in ("task", "payload", "created_at")]
    add_task = insert(tasks).from_select(
        ["task", "payload", "created_at"], select(*task).select_from(run)
    )
    hooks = webhook_events.created_statement_parts(
        run,
        org=_bound(runs.c.org_id, "run_org_id"),
        project=_bound(runs.c.project_id, "run_project_id"),
        document=bindparam("hook_document", type_=JSONB),
    )
    return select(
        run.c.resource_version,
        func.pg_notify(notify.CHANNEL, run.c.id),  # long polls in every API process
        func.pg_notify(outbox.CHANNEL, ""),  # the relay: a task to publish
    ).add_cte(add_labels.cte("labels"), add_event.cte("event"), add_task.cte("task"), *hooks)


ONE_STATEMENT = _one_statement(idempotent=False)
ONE_IDEMPOTENT_STATEMENT = _one_statement(idempotent=True)


def parameters(new: NewRun) -> dict[str, Any]:
    """`ONE_STATEMENT`'s parameters for a new run."""
    return {
        **{f"run_{name}": new.run[name] for name in RUN_FIELDS},
        **{f"event_{name}": new.event[name] for name in EVENT_FIELDS},
        "label_keys": list(new.labels),
        "label_values": list(new.labels.values()),
        "task": outbox.Task.SCHEDULE.value,
        "payload": {"run_id": new.run["id"]},
        "created_at": new.run["created_at"],
        # The `run.created` webhook body; its resource_version is known only after the insert.
        "hook_document": webhook_events.body(
            EventType.RUN_CREATED,
            {"run": {name: new.run[name] for name in webhook_events.RUN_FIELDS}},
            new.run["created_at"],
        ),
    }


async def create_async(
    db: AsyncDatabase,
    caller: Principal,
    body: RunCreate,
    idempotency_key: str | None,
    settings: Settings,
    waiting: WaitingRoom,
) -> RunOut | None:
    """`service.create_run` on the event loop (PostgreSQL), in one writing statement.

    The caller was authenticated before the body was read (api/edge.py). None when the
    Idempotency-Key is already taken: the caller answers through `service.create_run`, which
    replays the earlier run or refuses a different body.
    """
    caller.require(Role.MEMBER)
    if idempotency_key is not None:
        idempotency.validate_key(idempotency_key)
    wanted = tenants.wanted_project(caller, body.project)
    rows = await db.fetch(PROJECT_ID, {"org_id": caller.org_id, "wanted": wanted})
    project_id: str | None = rows[0]["id"] if rows else None
    tenants.judge_project(caller, wanted, project_id)
    assert project_id is not None  # judge_project raised otherwise
    await waiting.require_room_async(db, caller.org_id)
    new = new_run(caller, body, project_id)
    if idempotency_key is None:
        written = await db.write(ONE_STATEMENT, parameters(new))
    else:
        fingerprint = idempotency.request_hash(body.as_sent())
        record = idempotency.record_values(
            caller.org_id,
            idempotency_key,
            fingerprint,
            new.run["id"],
            settings.idempotency_ttl_hours,
        )
        claim = {f"key_{name}": value for name, value in record.items()}
        written = await db.write(ONE_IDEMPOTENT_STATEMENT, parameters(new) | claim)
        if not written:
            return None
    return document(new, int(written[0]["resource_version"]))

"""Run rules: create (idempotently), read, list, the change feed, cancel, edit and delete.

Services flush but never commit: the request's or task's session owner does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core import idempotency, outbox
from core.code import sources as code_sources
from core.errors import Conflict, FieldError, InvalidInput, NotFound, PreconditionFailed
from core.ids import new_id
from core.log_archive import delete_logs
from core.models import Run, utcnow
from core.pagination import EVENT_CURSOR, RUN_CURSOR
from core.runs import cloning, creation, events, repository
from core.runs.repository import RunFilter
from core.runs.schemas import RunEventOut, RunEventPage, RunOut, RunPage, RunPatch
from core.runs.spec import RunCreate, check_labels
from core.runs.states import RunStatus, StatusReason, transition
from core.runs.versions import claim_resource_version
from core.runs.waiting import WaitingRoom
from core.settings import Settings
from core.tenants import service as tenants
from core.tenants.schemas import Principal, Role
from core.webhooks import events as webhook_events


@dataclass(frozen=True)
class Created:
    run: Run
    replayed: bool


def get_run(session: Session, caller: Principal, run_id: str, *, for_update: bool = False) -> Run:
    """The caller's run; another org's (or another project's) run is exactly as missing."""
    if caller.run_id is not None and caller.run_id != run_id:  # no query for a run it can't see
        raise NotFound(f"Run {run_id} was not found.")
    run = repository.get_run(session, caller.org_id, run_id, for_update=for_update)
    if run is None or not visible(caller, run_id, run.project_id):
        raise NotFound(f"Run {run_id} was not found.")
    return run


def visible(caller: Principal, run_id: str, project_id: str) -> bool:
    """Whether a run of the caller's org may be shown to it: the same answer as 404 otherwise.

    A run token sees its own run only; a project-scoped key only its project's runs.
    """
    if caller.run_id is not None and caller.run_id != run_id:
        return False
    return not caller.project_id or project_id == caller.project_id


def create_run(
    session: Session,
    caller: Principal,
    body: RunCreate,
    idempotency_key: str | None = None,
    ttl_hours: int = 24,
    waiting: WaitingRoom | None = None,
) -> Created:
    """A new run (or the one an earlier request with the same Idempotency-Key made).

    `waiting`: the cap on the org's waiting runs (core/runs/waiting.py); None: no cap.
    """
    caller.require(Role.MEMBER)
    if idempotency_key is None:
        _require_room(session, caller, waiting)
        return Created(_insert_run(session, caller, body), replayed=False)
    idempotency.validate_key(idempotency_key)
    fingerprint = idempotency.request_hash(body.as_sent())
    earlier = idempotency.find(session, caller.org_id, idempotency_key, fingerprint)
    if earlier is not None:
        return _replay(session, caller, earlier)
    _require_room(session, caller, waiting)
    try:
        with session.begin_nested():
            run_id = new_id("run")
            idempotency.remember(
                session, caller.org_id, idempotency_key, fingerprint, run_id, ttl_hours
            )
            run = _insert_run(session, caller, body, run_id)
    except IntegrityError:
        # A concurrent request with the same key committed first: replay its result.
        earlier = idempotency.find(session, caller.org_id, idempotency_key, fingerprint)
        if earlier is None:
            raise
        return _replay(session, caller, earlier)
    return Created(run, replayed=False)


def clone_run(
    session: Session,
    caller: Principal,
    run_id: str,
    body: cloning.CloneIn,
    waiting: WaitingRoom | None = None,
    settings: Settings | None = None,
) -> Run:
    """A new run from another's spec with `body.overrides` applied; it records `cloned_from`.

    With `settings`, its code source is checked as a submission's is (core/code/sources.py).
    """
    caller.require(Role.MEMBER)
    source = get_run(session, caller, run_id)
    create = cloning.cloned_body(source.spec, source.project_id, body)
    if settings is not None and code_sources.needs_checks(create, settings):
        create = code_sources.check_at_submit(session, caller, settings, create)
    _require_room(session, caller, waiting)
    run = _insert_run(session, caller, create)
    run.cloned_from = source.id
    session.flush()
    _record(
        session, run, events.EventKind.CLONED, caller.key_id, message=f"cloned from {source.id}"
    )
    return run


def _require_room(session: Session, caller: Principal, waiting: WaitingRoom | None) -> None:
    if waiting is not None:
        waiting.require_room(session, caller.org_id)


def _replay(session: Session, caller: Principal, run_id: str) -> Created:
    try:
        return Created(get_run(session, caller, run_id), replayed=True)
    except NotFound:
        raise Conflict(
            f"The run this Idempotency-Key created ({run_id}) has since been deleted; "
            "use a new key to submit again.",
            "idempotent_run_deleted",
        ) from None


def _insert_run(
    session: Session, caller: Principal, body: RunCreate, run_id: str | None = None
) -> Run:
    """The ORM's writer of `creation.new_run` (the event loop's is `creation.create_async`)."""
    project = tenants.resolve_project(session, caller, body.project)
    new = creation.new_run(caller, body, project.id, run_id)
    # Claimed last: the counter row stays locked until commit (see versions.py).
    run = Run(**new.run, resource_version=claim_resource_version(session, new.run["id"]))
    session.add(run)
    session.flush()
    # A new run has no attempts or progress yet: say so rather than query for them later.
    set_committed_value(run, "attempts", [])
    set_committed_value(run, "training", None)
    repository.add_labels(session, run, new.labels)
    events.emit(session, {**new.event, "resource_version": run.resource_version})
    session.flush()
    # Committed with the run, published by the relay: the scheduler hears of it once it exists.
    outbox.enqueue(session, outbox.Task.SCHEDULE, run_id=run.id)
    webhook_events.run_created(session, run)
    return run


def _record(
    session: Session, run: Run, kind: events.EventKind, actor: str | None, **fields: Any
) -> None:
    events.emit_for(session, run, kind, actor=actor, **fields)
    session.flush()


def record_checkpoint(session: Session, run: Run, step: int, attempt: int) -> None:
    """A `checkpoint` event in the run's history: the run takes a new version for it, so event
    streams and long polls hear of the checkpoint as of any other change."""
    # The run row first, then the counter, as every writer takes them (states.transition).
    session.execute(select(Run.id).where(Run.id == run.id).with_for_update())
    version = claim_resource_version(session, run.id)
    session.execute(
        update(Run)
        .where(Run.id == run.id)
        .values(resource_version=version)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(run, "resource_version", version)
    _record(
        session, run, events.EventKind.CHECKPOINT, None, message=f"step {step} (attempt {attempt})"
    )


def parse_label_selector(selector: str) -> tuple[dict[str, str], list[str]]:
    """`k=v,k2` → ({k: v}, [k2]): equality and existence, as in Kubernetes selectors."""
    equal: dict[str, str] = {}
    present: list[str] = []
    for term in filter(None, (t.strip(" ") for t in selector.split(","))):
        key, sep, value = term.partition("=")
        key, value = key.strip(" "), value.strip(" ")  # spaces only: spec.LABEL_SELECTOR
        try:
            check_labels({key: value})
        except ValueError as exc:
            raise InvalidInput(
                f"Bad label selector term {term!r}.", [FieldError.for_parameter("labels", str(exc))]
            ) from None
        if sep:
            equal[key] = value
        else:
            present.append(key)
    return equal, present


def run_filter(
    caller: Principal,
    statuses: Sequence[str],
    project: str | None,
    labels: str | None,
    name_prefix: str | None,
    name: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> RunFilter:
    """The run list's query parameters as a filter (the run list and the event log read them);
    `project` is still the name or id the client sent."""
    equal, present = parse_label_selector(labels or "")
    return RunFilter(
        org_id=caller.org_id,
        project_id=project,
        statuses=list(statuses),
        labels_equal=equal,
        labels_present=present,
        name_prefix=name_prefix,
        name=name,
        created_after=created_after,
        created_before=created_before,
    )


def cursor_position(after: str | None) -> str | None:
    """The run id an `after` cursor points below (422 for a cursor we did not make)."""
    return RUN_CURSOR.decode(after) if after else None


def run_page(runs: Sequence[RunOut], limit: int) -> RunPage:
    """A list page from up to `limit + 1` runs: the extra one only says that more exist."""
    page, more = list(runs[:limit]), len(runs) > limit
    cursor = RUN_CURSOR.encode(page[-1].id) if more else None
    # Constructed, not validated: each RunOut is validated already, and validating the page
    # ran every run's validators again (a third of a 200-run page's time; issue 17).
    return RunPage.model_construct(data=page, has_more=more, next_cursor=cursor)


def refuse_feed_filters(filters: Mapping[str, object]) -> None:
    """The change feed (`changed_since`) returns every change in the project, deletions too:
    a run that stops matching a filter would silently vanish from a filtered feed, so filters
    are refused with it rather than ignored."""
    given = [name for name, value in filters.items() if value not in (None, [], "")]
    if given:
        raise InvalidInput(
            f"`changed_since` reads the change feed, which takes only `project` and `limit`; "
            f"drop {', '.join(f'`{name}`' for name in given)}, or filter the runs it returns.",
            [FieldError.for_parameter(name, "not with changed_since") for name in given],
        ).with_code("filter_not_with_changed_since")


def feed_page(runs: Sequence[RunOut], limit: int, after: int, upto: int) -> RunPage:
    """A change-feed page from up to `limit + 1` runs changed in (after, upto], oldest first.

    When more remain, the next read starts after this page's last version; otherwise at
    `upto` (`repository.current_version`: nothing at or below it can still commit).
    """
    page, more = list(runs[:limit]), len(runs) > limit
    next_version = page[-1].resource_version if more else max(upto, after)
    return RunPage.model_construct(data=page, has_more=more, resource_version=next_version)


def run_version(session: Session, caller: Principal, run_id: str) -> int | None:
    """The run's resource_version when the caller may see it (a conditional GET's check)."""
    if caller.project_id:  # scoped keys need the project check that get_run does
        return get_run(session, caller, run_id).resource_version
    return repository.run_version(session, caller.org_id, run_id)


def cancel_run(session: Session, caller: Principal, run_id: str) -> Run:
    """Cancel now if nothing runs yet; otherwise ask the workers to stop it. Repeats are no-ops."""
    caller.require(Role.MEMBER)
    run = get_run(session, caller, run_id, for_update=True)
    status = RunStatus(run.status)
    if status in {RunStatus.CANCELLED, RunStatus.STOPPING}:
        return run
    if status.is_terminal:
        raise Conflict(
            f"Run {run_id} already {status.value}; there is nothing to cancel.", "run_finished"
        )
    target = (
        RunStatus.STOPPING
        if status in {RunStatus.STARTING, RunStatus.RUNNING}
        else RunStatus.CANCELLED
    )
    run = transition(
        session,
        run,
        target,
        StatusReason.USER_CANCELLED,
        "Cancelled by the user.",
        actor=caller.key_id,
    )
    if target is RunStatus.STOPPING:  # processes may run: a worker stops them (same commit)
        outbox.enqueue(session, outbox.Task.STOP, run_id=run.id, attempt=run.attempt)
    return run


def update_run(
    session: Session, caller: Principal, run_id: str, patch: RunPatch, if_match: int | None
) -> Run:
    """Change a run's priority, max_duration or labels; 412 when `if_match` is stale."""
    caller.require(Role.MEMBER)
    run = get_run(session, caller, run_id, for_update=True)
    if if_match is not None and if_match != run.resource_version:
        raise PreconditionFailed(
            f"Run {run_id} changed since you read it (now version {run.resource_version})."
        )
    if RunStatus(run.status).is_terminal:
        raise Conflict(f"Run {run_id} has finished; it can no longer be edited.", "run_finished")
    changes = patch.model_dump(exclude_unset=True, exclude_none=True, mode="json")
    if not changes:
        return run
    spec = dict(run.spec)
    spec["scheduling"] = {
        **spec["scheduling"],
        **{k: v for k, v in changes.items() if k != "labels"},
    }
    if "labels" in changes:
        spec["labels"] = changes["labels"]
        run.labels = changes["labels"]
        repository.replace_labels(session, run, run.labels)
    run.spec = spec
    run.priority = spec["scheduling"]["priority"]
    _bump(session, run)
    _record(
        session,
        run,
        events.EventKind.UPDATED,
        caller.key_id,
        message=f"changed {', '.join(sorted(changes))}",
    )
    return run


def _bump(session: Session, run: Run) -> None:
    run.updated_at = utcnow()
    run.resource_version = claim_resource_version(session, run.id)
    session.flush()


def delete_run(session: Session, caller: Principal, run_id: str) -> None:
    """Tombstone a finished run: gone from reads, still visible to the change feed."""
    caller.require(Role.MEMBER)
    run = get_run(session, caller, run_id, for_update=True)
    if not RunStatus(run.status).is_terminal:
        raise Conflict(
            f"Run {run_id} is {run.status}; cancel it and wait for it to finish before deleting.",
            "run_not_finished",
        )
    run.deleted_at = utcnow()
    _bump(session, run)
    _record(session, run, events.EventKind.DELETED, caller.key_id)
    delete_logs(session, run_id)


def list_events(
    session: Session, caller: Principal, run_id: str, limit: int, after: str | None
) -> RunEventPage:
    """A page of the run's history (status changes and edits), oldest first."""
    run = get_run(session, caller, run_id)
    after_id = int(EVENT_CURSOR.decode(after)) if after else 0
    rows = repository.list_events(session, run.id, after_id, limit)
    page, more = rows[:limit], len(rows) > limit
    return RunEventPage(
        data=[RunEventOut.model_validate(e) for e in page],
        has_more=more,
        next_cursor=EVENT_CURSOR.encode(page[-1].id) if more else None,
    )

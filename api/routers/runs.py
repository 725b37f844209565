"""`/v1/runs`: submit, read, list, follow, edit, cancel and delete training runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import telemetry
from api.deps import (
    Caller,
    Credentials,
    SessionDep,
    SettingsDep,
    key_caller,
    run_caller,
    secret_of,
)
from api.edge import count_org, count_org_from_thread
from api.etags import IF_MATCH, list_etag, matches, parse_if_match, run_etag
from api.params import LabelSelector, Timestamp
from api.routers import events
from api.yaml_body import YamlBodyRoute
from core.aio import AsyncDatabase
from core.code import sources as code_sources
from core.db import read_scope, session_scope
from core.idempotency import KEY_PATTERN
from core.pagination import EVENT_CURSOR, MAX_PAGE_SIZE, RUN_CURSOR
from core.runs import creation, preflight, reads, service
from core.runs.cloning import CloneIn
from core.runs.preflight import RunPlan
from core.runs.repository import RunFilter
from core.runs.schemas import RunEventPage, RunOut, RunPage, RunPatch
from core.runs.spec import RunCreate
from core.runs.states import RunStatus
from core.runs.watch import wait_for_change
from core.settings import Settings
from core.tenants import run_tokens
from core.tenants import service as tenants
from core.tenants.schemas import Principal

router = APIRouter(prefix="/v1/runs", tags=["runs"], route_class=YamlBodyRoute)
RunId = Annotated[str, Path(min_length=1, max_length=64, description="a run id, `run_...`")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size")]
RunCursor = Annotated[
    str | None, Query(pattern=RUN_CURSOR.pattern, description="`next_cursor` of the last page")
]
EventCursor = Annotated[
    str | None, Query(pattern=EVENT_CURSOR.pattern, description="`next_cursor` of the last page")
]
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched the ETag)"}
}


def _run_response(response: Response, run: RunOut) -> RunOut:
    response.headers["ETag"] = run_etag(run.resource_version)
    return run


def _run_json(
    run: RunOut, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The run serialized once, here; FastAPI does not re-validate a returned Response.

    `response_model=RunOut` stays on the decorators for the OpenAPI document.
    """
    return Response(
        content=run.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers={**(headers or {}), "ETag": run_etag(run.resource_version)},
    )


# Where a new run's id leads, for clients that follow OpenAPI links (and schemathesis's
# stateful phase): the operations on `/v1/runs/{run_id}...` that a run answers from the moment
# it exists (its logs and provenance wait for its first attempt).
RUN_OPERATIONS = (
    "get_run", "update_run", "cancel_run", "delete_run", "list_run_events", "read_metrics",
    "record_metrics", "record_heartbeat", "list_checkpoints", "register_checkpoint",
)  # fmt: skip
CREATED_RUN: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "the new run",
        "links": {
            operation: {"operationId": operation, "parameters": {"run_id": "$response.body#/id"}}
            for operation in RUN_OPERATIONS
        },
    }
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RunOut, responses=CREATED_RUN)
async def create_run(
    request: Request,
    body: RunCreate,
    caller: Caller,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None, Header(max_length=255, json_schema_extra={"pattern": KEY_PATTERN})
    ] = None,
) -> Response:
    """Submit a run (JSON or YAML). Repeat with the same `Idempotency-Key` to retry safely."""
    if code_sources.needs_checks(body, settings):
        body = await run_in_threadpool(_checked_code, request, caller, settings, body)
    db: AsyncDatabase | None = request.app.state.async_db
    if db is not None:
        # On PostgreSQL: on the event loop, written in one statement (core/runs/creation.py);
        # a retry whose Idempotency-Key is taken is answered below.
        waiting = request.app.state.waiting_room
        run = await creation.create_async(db, caller, body, idempotency_key, settings, waiting)
        if run is not None:
            headers = {"Location": f"/v1/runs/{run.id}"}
            return _run_json(run, status.HTTP_201_CREATED, headers)

    def submit() -> Response:
        # One worker thread: insert, serialize and commit (the caller was settled at the edge).
        with session_scope(request.app.state.sessionmaker) as session:
            created = service.create_run(
                session,
                caller,
                body,
                idempotency_key,
                settings.idempotency_ttl_hours,
                request.app.state.waiting_room,
            )
            headers = {"Location": f"/v1/runs/{created.run.id}"}
            if created.replayed:
                headers["Idempotent-Replayed"] = "true"
            run = service.with_queue(session, created.run, settings, caller)
            return _run_json(run, status.HTTP_201_CREATED, headers)

    return await run_in_threadpool(submit)


def _checked_code(
    request: Request, caller: Principal, settings: Settings, body: RunCreate
) -> RunCreate:
    """The code source checked (and a git ref resolved) in a session of its own."""
    with session_scope(request.app.state.sessionmaker) as session:
        return code_sources.check_at_submit(session, caller, settings, body)


@router.post("/plan", response_model=RunPlan)
def plan_run(
    body: RunCreate, caller: Caller, session: SessionDep, settings: SettingsDep
) -> RunPlan:
    """What `POST /v1/runs` with this body would create, where it would run, what it would cost.

    Nothing is stored.
    """
    return preflight.plan_run(session, caller, body, settings)


@router.get("", response_model=RunPage, responses=NOT_MODIFIED)
async def list_runs(
    request: Request,
    credentials: Credentials,
    settings: SettingsDep,
    status_: Annotated[list[RunStatus] | None, Query(alias="status", max_length=8)] = None,
    project: Annotated[str | None, Query(max_length=63)] = None,
    labels: LabelSelector = None,
    name_prefix: Annotated[str | None, Query(max_length=40)] = None,
    name: Annotated[
        str | None, Query(max_length=40, description="exactly this name (names repeat)")
    ] = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    changed_since: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Limit = 50,
    after: RunCursor = None,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """Newest first, keyset-paged. With `changed_since`, only runs changed after that version
    (oldest first, deletions included), and no filter but `project`."""
    if changed_since is not None:
        filters: dict[str, object] = {"status": status_, "labels": labels, "name": name}
        filters |= {"name_prefix": name_prefix, "after": after}
        service.refuse_feed_filters(
            filters | {"created_after": created_after, "created_before": created_before}
        )
    secret = secret_of(credentials)

    def criteria(caller: Principal) -> RunFilter:
        return service.run_filter(  # after authentication: a bad selector is a caller's 422
            caller,
            [s.value for s in status_ or []],
            project,
            labels,
            name_prefix,
            name,
            created_after,
            created_before,
        )

    def page_of(session: Session, caller: Principal) -> RunPage:
        if changed_since is not None:
            return service.changes_since(session, caller, changed_since, limit, project)
        return service.list_runs(session, caller, criteria(caller), limit, after)

    def listed() -> Response:
        # One worker thread; reads only, so autocommit on PostgreSQL (`core.db.read_engine`):
        # each statement sees what was committed before it, as in a READ COMMITTED transaction.
        with session_scope(request.app.state.read_sessionmaker) as session:
            caller = key_caller(session, settings, secret)
            count_org_from_thread(request, caller)
            etag = list_etag(service.list_version(session, caller), request)
            if matches(if_none_match, etag):
                return Response(status_code=304, headers={"ETag": etag})
            page = page_of(session, caller)
        return _page_json(page, etag)

    async def listed_async(reader: AsyncDatabase) -> Response:
        # As listed(), on the event loop with the same statements (core/runs/reads.py).
        caller = await tenants.authenticate_async(
            reader, secret, settings.key_touch_interval_seconds
        )
        await count_org(request, caller)
        etag = list_etag(await reads.org_version_async(reader, caller), request)
        if matches(if_none_match, etag):
            return Response(status_code=304, headers={"ETag": etag})
        if changed_since is not None:
            page = await reads.changes_async(reader, caller, changed_since, limit, project)
        else:
            page = await reads.list_async(reader, caller, criteria(caller), limit, after)
        return _page_json(page, etag)

    reader: AsyncDatabase | None = request.app.state.async_db
    if reader is not None:
        return await listed_async(reader)
    return await run_in_threadpool(listed)


def _page_json(page: RunPage, etag: str) -> Response:
    return Response(page.model_dump_json(), media_type="application/json", headers={"ETag": etag})


@router.get("/{run_id}", response_model=RunOut, responses=NOT_MODIFIED)
async def get_run(
    request: Request,
    run_id: RunId,
    credentials: Credentials,
    settings: SettingsDep,
    wait: Annotated[int, Query(ge=0, le=600, description="long-poll up to N seconds")] = 0,
    resource_version: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """A run. With `wait`, answers as soon as it changes past `resource_version`."""
    # Each step is one unit of work in one worker thread: the connection goes back to the pool
    # before the request waits for its next thread (or, in a long poll, for a change).
    sessions = request.app.state.sessionmaker
    secret = secret_of(credentials)

    def read(caller: Principal | None, conditional: bool) -> Response:
        # `caller` given: authenticated (and counted) already; else a run token's or the ORM
        # path's own authentication, counted here.
        with session_scope(sessions) as session:
            if caller is None:
                caller = run_caller(session, settings, secret)
                count_org_from_thread(request, caller)
            if conditional:  # 304: one auth query and one version query
                version = service.run_version(session, caller, run_id)
                if version is not None and matches(if_none_match, run_etag(version)):
                    return Response(status_code=304, headers={"ETag": run_etag(version)})
            return _run_json(service.describe_run(session, caller, run_id, settings))

    def read_fast() -> Response:
        # An API key's plain or conditional GET: one statement per read (core/runs/reads.py),
        # counted against the key's org between the statement and the answer.
        touch_s = settings.key_touch_interval_seconds
        with read_scope(request.app.state.read_engine) as conn:
            if if_none_match:
                keyed = reads.keyed_version(conn, secret, run_id, touch_s)
                count_org_from_thread(request, keyed[0])
                version = reads.version_of(keyed, run_id)
                if matches(if_none_match, run_etag(version)):
                    return Response(status_code=304, headers={"ETag": run_etag(version)})
            keyed = reads.keyed_run(conn, secret, run_id, touch_s)
            if not if_none_match:
                count_org_from_thread(request, keyed[0])
            run = reads.shown(keyed, run_id)
        return _run_json(run) if run is not None else read(keyed[0], False)

    async def read_async(reader: AsyncDatabase) -> Response:
        # As read_fast, on the event loop: no worker thread (PostgreSQL, core/aio.py).
        touch_s = settings.key_touch_interval_seconds
        if if_none_match:
            keyed = await reads.keyed_version_async(reader, secret, run_id, touch_s)
            await count_org(request, keyed[0])
            version = reads.version_of(keyed, run_id)
            if matches(if_none_match, run_etag(version)):
                return Response(status_code=304, headers={"ETag": run_etag(version)})
        keyed = await reads.keyed_run_async(reader, secret, run_id, touch_s)
        if not if_none_match:
            await count_org(request, keyed[0])
        run = reads.shown(keyed, run_id)
        if run is not None:
            return _run_json(run)
        return await run_in_threadpool(read, keyed[0], False)

    if not wait:
        if secret is not None and run_tokens.looks_like_run_token(secret):
            return await run_in_threadpool(read, None, bool(if_none_match))
        reader: AsyncDatabase | None = request.app.state.async_db
        if reader is not None:
            return await read_async(reader)
        return await run_in_threadpool(read_fast)

    def authenticated() -> Principal:
        with session_scope(sessions) as session:
            return run_caller(session, settings, secret)

    def read_version() -> int | None:
        with session_scope(sessions) as session:
            return service.run_version(session, caller, run_id)

    caller = await run_in_threadpool(authenticated)
    await count_org(request, caller)
    baseline = resource_version
    if baseline is None:
        baseline = await run_in_threadpool(read_version) or 0
    timeout = min(wait, settings.long_poll_max_seconds)
    with telemetry.long_poll_open():
        await wait_for_change(run_id, baseline, timeout, lambda: run_in_threadpool(read_version))
    return await run_in_threadpool(read, caller, False)


@router.patch("/{run_id}", response_model=RunOut)
def update_run(
    run_id: RunId,
    patch: RunPatch,
    caller: Caller,
    session: SessionDep,
    response: Response,
    if_match: Annotated[
        str | None, Header(max_length=64, json_schema_extra={"pattern": IF_MATCH.pattern})
    ] = None,
) -> RunOut:
    """Change priority, max_duration or labels. Send `If-Match` to refuse lost updates (412)."""
    run = service.update_run(session, caller, run_id, patch, parse_if_match(if_match))
    return _run_response(response, RunOut.model_validate(run))


@router.post("/{run_id}/cancel", response_model=RunOut)
def cancel_run(run_id: RunId, caller: Caller, session: SessionDep, response: Response) -> RunOut:
    """Cancel: at once if it has not started, else `stopping` until its processes are gone."""
    run = service.cancel_run(session, caller, run_id)
    return _run_response(response, RunOut.model_validate(run))


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_run(run_id: RunId, caller: Caller, session: SessionDep) -> Response:
    """Delete a finished run (409 while it is still active)."""
    service.delete_run(session, caller, run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{run_id}/clone", status_code=status.HTTP_201_CREATED, response_model=RunOut)
def clone_run(
    request: Request,
    run_id: RunId,
    body: CloneIn,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> RunOut:
    """Submit a new run from this one's spec, with `--set`-style dotted overrides."""
    waiting = request.app.state.waiting_room
    run = service.clone_run(session, caller, run_id, body, waiting, settings)
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return _run_response(response, service.with_queue(session, run, settings, caller))


@router.get("/{run_id}/events", response_model=RunEventPage, responses=events.STREAM_RESPONSES)
async def list_run_events(
    request: Request,
    run_id: RunId,
    caller: Caller,
    limit: Limit = 50,
    after: EventCursor = None,
    since: events.Since = None,
    accept: Annotated[str | None, Header(max_length=1024)] = None,
    last_event_id: events.LastEventId = None,
) -> Response:
    """The run's history, oldest first: every status change and edit. With `Accept:
    text/event-stream`, that history (or what follows `since` / `Last-Event-ID`) and then each
    new event as Server-Sent Events (see `GET /v1/events`)."""
    if events.wants_stream(accept):
        start = events.resume_point(since, last_event_id)
        return await events.run_stream(request, caller, run_id, start)

    def page() -> RunEventPage:
        with session_scope(request.app.state.sessionmaker) as session:
            return service.list_events(session, caller, run_id, limit, after)

    listed = await run_in_threadpool(page)
    return Response(listed.model_dump_json(), media_type="application/json")

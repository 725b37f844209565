"""`/v1/runs`: submit, read, list, follow, edit, cancel and delete training runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from api.deps import (
    Caller,
    Credentials,
    RunAccessDep,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
    WaitingRoomDep,
    secret_of,
)
from api.etags import IF_MATCH, parse_if_match, run_etag
from api.params import LabelSelector, Timestamp
from api.routers import events
from api.run_access import RunQuery
from api.yaml_body import YamlBodyRoute
from core.db import session_scope
from core.idempotency import KEY_PATTERN
from core.pagination import EVENT_CURSOR, MAX_PAGE_SIZE, RUN_CURSOR
from core.runs import service
from core.runs.cloning import CloneIn
from core.runs.schemas import RunEventPage, RunOut, RunPage, RunPatch
from core.runs.spec import RunCreate
from core.runs.states import RunStatus
from core.scheduling import explain, preflight
from core.scheduling.preflight import RunPlan

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
    body: RunCreate,
    caller: Caller,
    runs: RunAccessDep,
    idempotency_key: Annotated[
        str | None, Header(max_length=255, json_schema_extra={"pattern": KEY_PATTERN})
    ] = None,
) -> Response:
    """Submit a run (JSON or YAML). Repeat with the same `Idempotency-Key` to retry safely."""
    return await runs.create_run(caller, body, idempotency_key)


@router.post("/plan", response_model=RunPlan)
def plan_run(
    body: RunCreate, caller: Caller, session: SessionDep, settings: SettingsDep
) -> RunPlan:
    """What `POST /v1/runs` with this body would create, where it would run, what it would cost.

    Nothing is stored.
    """
    return preflight.plan_run(session, caller, body, settings)


def run_query(
    request: Request,
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
) -> RunQuery:
    """`GET /v1/runs`'s filter and paging parameters, as one value. The change feed
    (`changed_since`) takes no filter but `project` (core/runs/service.py)."""
    if changed_since is not None:
        filters: dict[str, object] = {"status": status_, "labels": labels, "name": name}
        filters |= {"name_prefix": name_prefix, "after": after}
        service.refuse_feed_filters(
            filters | {"created_after": created_after, "created_before": created_before}
        )
    return RunQuery(
        statuses=status_ or [],
        project=project,
        labels=labels,
        name_prefix=name_prefix,
        name=name,
        created_after=created_after,
        created_before=created_before,
        changed_since=changed_since,
        limit=limit,
        after=after,
        query=str(request.query_params),
    )


RunFilterDep = Annotated[RunQuery, Depends(run_query)]


@router.get("", response_model=RunPage, responses=NOT_MODIFIED)
async def list_runs(
    credentials: Credentials,
    filters: RunFilterDep,
    runs: RunAccessDep,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """Newest first, keyset-paged. With `changed_since`, only runs changed after that version
    (oldest first, deletions included), and no filter but `project`."""
    return await runs.list_runs(secret_of(credentials), filters, if_none_match)


@router.get("/{run_id}", response_model=RunOut, responses=NOT_MODIFIED)
async def get_run(
    run_id: RunId,
    credentials: Credentials,
    runs: RunAccessDep,
    wait: Annotated[int, Query(ge=0, le=600, description="long-poll up to N seconds")] = 0,
    resource_version: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """A run. With `wait`, answers as soon as it changes past `resource_version`."""
    secret = secret_of(credentials)
    return await runs.read_run(secret, run_id, if_none_match, wait, resource_version)


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
    run_id: RunId,
    body: CloneIn,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    waiting: WaitingRoomDep,
    response: Response,
) -> RunOut:
    """Submit a new run from this one's spec, with `--set`-style dotted overrides."""
    run = service.clone_run(session, caller, run_id, body, waiting, settings)
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return _run_response(response, explain.with_queue(session, run, settings, caller))


@router.get("/{run_id}/events", response_model=RunEventPage, responses=events.STREAM_RESPONSES)
async def list_run_events(
    streams: events.StreamsDep,
    sessions: SessionmakerDep,
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
        return await events.run_stream(streams, caller, run_id, start)

    def page() -> RunEventPage:
        with session_scope(sessions) as session:  # the primary: read your own writes
            return service.list_events(session, caller, run_id, limit, after)

    listed = await run_in_threadpool(page)
    return Response(listed.model_dump_json(), media_type="application/json")

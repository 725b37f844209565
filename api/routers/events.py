"""`GET /v1/events`: the org's event log as Server-Sent Events, and a run's (issue 19).

Each message's `id` is the event's resource version. A client that reconnects with
`Last-Event-ID` (what an EventSource sends by itself) or `?since=` gets every event after that
version exactly once: see core/events/stream.py. Idle streams hold no database connection;
keep-alive comments go out every `TRAINPORT_SSE_KEEPALIVE_SECONDS`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api import telemetry
from api.deps import Caller, EventPumpDep, ReadSessionmakerDep, SettingsDep
from api.params import LabelSelector, Timestamp
from api.routing import UnitOfWorkRoute
from core.db import session_scope
from core.errors import FieldError, InvalidInput
from core.events import stream
from core.events.repository import Event, EventBatch, read_events
from core.events.schemas import EventOut, EventPage
from core.pagination import MAX_PAGE_SIZE
from core.runs import service
from core.runs.repository import RunFilter, current_version
from core.runs.states import RunStatus
from core.tenants import service as tenants
from core.tenants.schemas import Principal

router = APIRouter(prefix="/v1", tags=["events"], route_class=UnitOfWorkRoute)
EVENT_STREAM = "text/event-stream"
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `id` the resource version, `event` `run.<kind>`, "
        "`data` the event as JSON",
        "content": {EVENT_STREAM: {}},
    }
}
Since = Annotated[
    int | None, Query(ge=0, le=2**62, description="resume after this resource version")
]
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=32,
        pattern=r"^[0-9]{0,18}$",  # HTTP trims a header value's surrounding whitespace
        description="the `id` of the last event received (a reconnecting EventSource sends it)",
    ),
]


def wants_stream(accept: str | None) -> bool:
    return EVENT_STREAM in (accept or "")


def resume_point(since: int | None, last_event_id: str | None) -> int | None:
    """Where a stream resumes: `Last-Event-ID` (a reconnecting EventSource) wins over `since`."""
    if last_event_id is None or not last_event_id.strip():
        return since
    if not re.fullmatch(r"[0-9]{1,18}", last_event_id.strip()):  # isdigit() takes "²" too
        raise InvalidInput(
            "Last-Event-ID must be a resource version from this stream.",
            [FieldError.for_parameter("Last-Event-ID", "not a resource version")],
        )
    return int(last_event_id.strip())


@dataclass(frozen=True)
class Streams:
    """What an event stream reads from: the process's pump and the read sessions."""

    pump: stream.EventPump
    sessions: sessionmaker[Session]
    keepalive_seconds: float


async def get_streams(
    pump: EventPumpDep, sessions: ReadSessionmakerDep, settings: SettingsDep
) -> Streams:
    return Streams(pump, sessions, settings.sse_keepalive_seconds)


StreamsDep = Annotated[Streams, Depends(get_streams)]


def streamed(
    streams: Streams,
    caller: Principal,
    since: int | None,
    wanted: Any,
    run_id: str | None = None,
) -> StreamingResponse:
    """The SSE response: events past `since` (default: from now) that `wanted` lets through."""
    sessions = streams.sessions

    def catch_up(after: int) -> EventBatch:
        with session_scope(sessions) as session:
            return read_events(
                session, after, stream.CATCH_UP_BATCH, org_id=caller.org_id, run_id=run_id
            )

    def now() -> int:
        with session_scope(sessions) as session:
            return current_version(session)

    async def body() -> AsyncIterator[bytes]:
        start = since if since is not None else await run_in_threadpool(now)
        with telemetry.stream_open():
            async for chunk in stream.stream(
                streams.pump,
                caller.org_id,
                start,
                lambda after: run_in_threadpool(catch_up, after),
                wanted,
                streams.keepalive_seconds,
            ):
                yield chunk

    return StreamingResponse(
        body(),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/events", response_model=EventPage, responses=STREAM_RESPONSES)
async def list_events(
    streams: StreamsDep,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size (JSON)")] = 50,
    accept: Annotated[str | None, Header(max_length=1024)] = None,
    status_: Annotated[list[RunStatus] | None, Query(alias="status", max_length=8)] = None,
    project: Annotated[str | None, Query(max_length=63)] = None,
    labels: LabelSelector = None,
    name_prefix: Annotated[str | None, Query(max_length=40)] = None,
    name: Annotated[str | None, Query(max_length=40)] = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    since: Since = None,
    last_event_id: LastEventId = None,
) -> Response:
    """The org's run events (run created, status changes with their reason, edits,
    deletions), filtered as `GET /v1/runs` filters, oldest first after `since`. With `Accept:
    text/event-stream`, a stream of them as they happen (from now, or after `since` /
    `Last-Event-ID`); otherwise one JSON page, whose `resource_version` is the next `since`."""
    start = resume_point(since, last_event_id)
    criteria = await run_in_threadpool(
        _criteria,
        streams.sessions,
        caller,
        [s.value for s in status_ or []],
        project,
        labels,
        name_prefix,
        name,
        created_after,
        created_before,
    )

    def wanted(event: Event) -> bool:
        return _visible(caller, criteria, event)

    if wants_stream(accept):
        return streamed(streams, caller, start, wanted)

    def page() -> EventBatch:
        with session_scope(streams.sessions) as session:
            return read_events(session, start or 0, limit, org_id=caller.org_id)

    batch = await run_in_threadpool(page)
    shown = [EventOut(**stream.event_document(e)) for e in batch.events if wanted(e)]
    listed = EventPage(data=shown, has_more=batch.more, resource_version=batch.position)
    return Response(listed.model_dump_json(), media_type="application/json")


def _criteria(
    sessions: sessionmaker[Session],
    caller: Principal,
    statuses: list[str],
    project: str | None,
    labels: str | None,
    name_prefix: str | None,
    name: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> RunFilter:
    """The run list's filters, parsed as `GET /v1/runs` parses them, the project resolved."""
    criteria = service.run_filter(
        caller, statuses, project, labels, name_prefix, name, created_after, created_before
    )
    criteria.project_id = caller.project_id
    if project is not None:
        with session_scope(sessions) as session:
            criteria.project_id = tenants.resolve_project(session, caller, project).id
    return criteria


def _visible(caller: Principal, criteria: RunFilter, event: Event) -> bool:
    if not service.visible(caller, event.run_id, event.project_id):
        return False
    return stream.matches(criteria, event)


async def run_stream(
    streams: Streams, caller: Principal, run_id: str, since: int | None
) -> StreamingResponse:
    """`GET /v1/runs/{id}/events` with `Accept: text/event-stream`: the run's history (or
    what follows `since`), then its events as they happen."""

    def check() -> None:
        with session_scope(streams.sessions) as session:
            service.get_run(session, caller, run_id)  # another org's run is simply missing

    await run_in_threadpool(check)
    criteria = RunFilter(org_id=caller.org_id)
    return streamed(
        streams,
        caller,
        since if since is not None else 0,
        lambda event: stream.matches(criteria, event, run_id),
        run_id=run_id,
    )

"""Request-scoped dependencies: settings, the unit-of-work session, and the authenticated caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.app_state import app_engine, app_sessionmaker, app_settings
from api.edge import settled_caller
from api.run_access import RunAccess
from core.db import session_scope
from core.events.repository import EventBatch, read_events
from core.events.stream import PUMP_BATCH, EventPump
from core.runs.repository import current_version
from core.runs.waiting import WaitingRoom
from core.settings import Settings
from core.tenants.schemas import Principal


async def get_settings(request: Request) -> Settings:  # async: no threadpool hop
    return app_settings(request.app)


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; it commits when the route returns and rolls back if it raises."""
    with session_scope(app_sessionmaker(request.app)) as session:
        yield session


async def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    """For routes whose work outlives the request's session (a streamed log, a long poll)."""
    return app_sessionmaker(request.app)


async def get_engine(request: Request) -> Engine:
    return app_engine(request.app)


async def get_sandbox(request: Request) -> str:
    """Whether local ranks are sandboxed, as announced at start-up (core/sandbox.py)."""
    sandbox: str = request.app.state.sandbox
    return sandbox


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionmakerDep = Annotated[sessionmaker[Session], Depends(get_sessionmaker)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SandboxDep = Annotated[str, Depends(get_sandbox)]
# scope="function": commit before the response is sent, so a client never reads stale data.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer tp_...`")
# The presented secret alone (HTTPBearer is async: no threadpool hop), for routes that
# authenticate inside their own one-statement reads (api/run_access.py).
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def secret_of(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials else None


async def get_run_access(request: Request) -> RunAccess:
    """The run routes' way to the data, chosen once by the lifespan (api/run_access.py)."""
    access: RunAccess = request.app.state.run_access
    return access


RunAccessDep = Annotated[RunAccess, Depends(get_run_access)]


async def get_read_sessionmaker(request: Request) -> sessionmaker[Session]:
    """Sessions on the read engine (a replica where one is configured): for reads that
    outlive the request's unit of work (an event stream, a page read in a worker thread)."""
    factory: sessionmaker[Session] = request.app.state.read_sessionmaker
    return factory


async def get_waiting_room(request: Request) -> WaitingRoom:
    """The process's bound on runs an org may have waiting for the scheduler."""
    room: WaitingRoom = request.app.state.waiting_room
    return room


async def get_event_pump(request: Request) -> EventPump:
    """The process's one event pump (core/events/stream.py), made on the first stream's
    request: it belongs to the event loop serving it, and the lifespan closes it."""
    pump: EventPump | None = request.app.state.event_pump
    if pump is None:
        pump = request.app.state.event_pump = _event_pump(request.app.state.read_sessionmaker)
    return pump


def _event_pump(sessions: sessionmaker[Session]) -> EventPump:
    def read_all(after: int) -> EventBatch:
        with session_scope(sessions) as session:
            return read_events(session, after, PUMP_BATCH)

    def start_at() -> int:
        with session_scope(sessions) as session:
            return current_version(session)

    return EventPump(
        lambda after: run_in_threadpool(read_all, after), lambda: run_in_threadpool(start_at)
    )


async def get_metrics_registry(request: Request) -> CollectorRegistry:
    """What `/metrics` serves: this process's series and the platform's gauges (api/app.py)."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return registry


MetricsRegistryDep = Annotated[CollectorRegistry, Depends(get_metrics_registry)]
ReadSessionmakerDep = Annotated[sessionmaker[Session], Depends(get_read_sessionmaker)]
WaitingRoomDep = Annotated[WaitingRoom, Depends(get_waiting_room)]
EventPumpDep = Annotated[EventPump, Depends(get_event_pump)]


async def get_caller(request: Request, credentials: Credentials) -> Principal:
    """The API key's caller, authenticated before the body was read (api/edge.py).

    (`credentials` is for the OpenAPI document: it marks the route as needing a bearer key.)
    """
    return settled_caller(request)


Caller = Annotated[Principal, Depends(get_caller)]


async def get_run_caller(request: Request, credentials: Credentials) -> Principal:
    """An API key, or a run token (`tpr_...`) on the routes a run's own processes call."""
    return settled_caller(request)


# Routes that a run's processes call with their run token (docs/runtime-api.md, section 2).
RunCaller = Annotated[Principal, Depends(get_run_caller)]

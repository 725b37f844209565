"""Request-scoped dependencies: settings, the unit-of-work session, and the authenticated caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.app_state import app_engine, app_sessionmaker, app_settings
from api.edge import settled_caller
from api.run_access import RunAccess
from core.db import session_scope
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

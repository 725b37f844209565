"""Request-scoped dependencies: settings, the unit-of-work session, and the authenticated caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from core.db import session_scope
from core.settings import Settings
from core.tenants import run_tokens
from core.tenants.schemas import Principal
from core.tenants.service import authenticate


async def get_settings(request: Request) -> Settings:  # async: no threadpool hop
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; it commits when the route returns and rolls back if it raises."""
    with session_scope(request.app.state.sessionmaker) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": commit before the response is sent, so a client never reads stale data.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer tp_...`")
# The presented secret alone (HTTPBearer is async: no threadpool hop), for routes that
# authenticate inside their own single worker-thread unit of work (see `run_caller`).
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def secret_of(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials else None


def run_caller(session: Session, settings: Settings, secret: str | None) -> Principal:
    """An API key, or a run token (`tpr_...`): `get_run_caller` without its commit."""
    if secret is None or not run_tokens.looks_like_run_token(secret):
        return authenticate(session, secret, settings.key_touch_interval_seconds)
    return run_tokens.authenticate(session, settings.secret_key.get_secret_value(), secret)


def key_caller(bind: Session | Connection, settings: Settings, secret: str | None) -> Principal:
    """An API key's caller: `get_caller` without its commit."""
    return authenticate(bind, secret, settings.key_touch_interval_seconds)


def get_caller(session: SessionDep, settings: SettingsDep, credentials: Credentials) -> Principal:
    caller = authenticate(session, secret_of(credentials), settings.key_touch_interval_seconds)
    # Return the connection to the pool within this worker thread: a request that held one while
    # queueing for its next thread could wait behind threads that wait for connections (a
    # deadlock until the pool times out). The route's work begins a new transaction.
    session.commit()
    return caller


Caller = Annotated[Principal, Depends(get_caller)]


def get_run_caller(
    session: SessionDep, settings: SettingsDep, credentials: Credentials
) -> Principal:
    """An API key, or a run token (`tpr_...`) on the routes a run's own processes call."""
    caller = run_caller(session, settings, secret_of(credentials))
    session.commit()  # as in get_caller: hand the connection back before the route's work
    return caller


# Routes that a run's processes call with their run token (docs/runtime-api.md, section 2).
RunCaller = Annotated[Principal, Depends(get_run_caller)]

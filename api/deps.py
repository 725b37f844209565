"""Request-scoped dependencies: settings, the unit-of-work session, and the authenticated caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from api.edge import settled_caller
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

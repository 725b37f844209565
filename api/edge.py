"""The API's edge: who is calling is settled, and counted, before a request body is read.

Order for every request:

1. `EdgeMiddleware`, before anything else: a client address whose failed authentications have
   used up `TRAINPORT_RATE_LIMIT_FAILED_AUTH` gets 429 at once (no database, no body); the
   presented credential (API key or run token, by digest) counts against
   `TRAINPORT_RATE_LIMIT_PER_KEY`; every 401 answered counts against its address (requests
   with run tokens excepted: see `EdgeMiddleware.__call__`).
2. `UnitOfWorkRoute` (api/routing.py, every router's route class), before FastAPI reads or
   parses the body: the routes that take a caller authenticate here (`authenticate_first`),
   count against `TRAINPORT_RATE_LIMIT_PER_ORG`, and leave the caller in the request's state,
   where the `Caller`/`RunCaller` dependencies (`POST /v1/runs` among them) find it. Only
   `GET /v1/runs` and `GET /v1/runs/{id}` take the bare credentials and authenticate inside
   their own one-statement reads (api/run_access.py, core/runs/reads.py); they count against
   the org the same way as soon as that statement has admitted the key, with no second query.
"""

from __future__ import annotations

import contextlib
from enum import StrEnum

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.app_state import app_rate_limiter
from api.problems import ProblemResponse, problem
from core import process_logging
from core.aio import AsyncDatabase
from core.db import read_scope, session_scope
from core.ratelimit import RateLimited, RateLimiter, credential_id
from core.runs import run_tokens
from core.settings import Settings
from core.tenants import service as tenants
from core.tenants.schemas import Principal


class CallerKind(StrEnum):
    KEY = "key"  # an API key
    KEY_OR_RUN = "key-or-run"  # an API key, or a run token on the routes runs call


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def bearer_secret(headers: Headers) -> str | None:
    scheme, _, secret = headers.get("authorization", "").partition(" ")
    return secret.strip() or None if scheme.lower() == "bearer" else None


class EdgeMiddleware:
    """Per-address failed-authentication and per-credential limits, before anything else."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        secret = bearer_secret(Headers(scope=scope))
        # A run token is checked by its signature alone, no database: guessing one is
        # hopeless, so its 401s are not counted and its address is not held against it (one
        # hostile run guessing keys must not silence the other runs on its node).
        signed = secret is not None and run_tokens.looks_like_run_token(secret)
        try:
            if not signed:
                await self.limiter.blocked(self.limiter.failed_auth, address)
            if secret is not None:
                await self.limiter.hit(self.limiter.per_key, credential_id(secret))
        except RateLimited as refused:
            await rate_limited(refused, scope)(scope, receive, send)
            return
        await self.app(scope, receive, send if signed else self._counting_401s(send, address))

    def _counting_401s(self, send: Send, address: str) -> Send:
        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                # This 401 goes out either way; the address's next request gets the 429.
                with contextlib.suppress(RateLimited):
                    await self.limiter.hit(self.limiter.failed_auth, address)
            await send(message)

        return counting


def rate_limited(refused: RateLimited, scope: Scope) -> ProblemResponse:
    headers = {"Retry-After": str(refused.retry_after)}
    return problem(
        429, refused.code, refused.title, refused.detail, Request(scope), headers=headers
    )


async def authenticate_first(request: Request, kind: CallerKind, on_loop: bool) -> Principal:
    """The request's caller, settled before its body is read; counted against its org.

    `on_loop`: an `async def` route's key is looked up on the event loop (asyncpg, where
    configured), a plain route's in a worker thread, where its dependency used to look it up.
    """
    settings: Settings = request.app.state.settings
    secret = bearer_secret(request.headers)
    if kind is CallerKind.KEY_OR_RUN and secret and run_tokens.looks_like_run_token(secret):
        caller = await run_in_threadpool(_run_token_caller, request, settings, secret)
    else:
        caller = await _key_caller(request, settings, secret, on_loop)
    await count_org(request, caller)
    request.state.principal = caller
    process_logging.org_id.set(caller.org_id)  # on every line logged for this request
    return caller


async def count_org(request: Request, caller: Principal) -> None:
    """Count the request against the caller's org (`TRAINPORT_RATE_LIMIT_PER_ORG`); 429 over."""
    limiter = app_rate_limiter(request.app)
    await limiter.hit(limiter.per_org, caller.org_id)


async def _key_caller(
    request: Request, settings: Settings, secret: str | None, on_loop: bool
) -> Principal:
    touch_s = settings.key_touch_interval_seconds
    db: AsyncDatabase | None = request.app.state.async_db
    if db is not None and on_loop:  # PostgreSQL: on the event loop (core/aio.py)
        return await tenants.authenticate_async(db, secret, touch_s)

    def in_thread() -> Principal:
        with read_scope(request.app.state.read_engine) as conn:
            return tenants.authenticate(conn, secret, touch_s)

    return await run_in_threadpool(in_thread)


def _run_token_caller(request: Request, settings: Settings, secret: str) -> Principal:
    with session_scope(request.app.state.sessionmaker) as session:
        return run_tokens.authenticate(session, settings.secret_key.get_secret_value(), secret)


def settled_caller(request: Request) -> Principal:
    """The caller `authenticate_first` settled for this request."""
    caller: Principal | None = getattr(request.state, "principal", None)
    if caller is None:  # a route that takes a caller without UnitOfWorkRoute: a bug
        raise RuntimeError(f"{request.url.path}: no caller was authenticated at the edge")
    return caller

"""How the run routes reach the data: one `RunAccess`, chosen once at start-up.

The hot run routes (`POST /v1/runs`, `GET /v1/runs`, `GET /v1/runs/{id}`) have two ways to the
database, and a route never picks between them: it declares `RunAccessDep` and makes one call.

- `EventLoopRunAccess` (PostgreSQL with `TRAINPORT_ASYNC_READS`, the default there): reads and
  the create statement on the event loop through asyncpg (core/aio.py, core/runs/reads.py,
  core/runs/creation.py), with no worker thread.
- `ThreadpoolRunAccess` (SQLite, or `TRAINPORT_ASYNC_READS=false`): the same statements through
  SQLAlchemy in one worker thread per unit of work.

The lifespan (api/app.py) picks one when it opens (or not) the asyncpg pool. What the fast path
cannot answer falls back inside the implementation, never as a `None` the route interprets: a
queued run's read (its queue position needs the scheduler's plan) and a create whose
Idempotency-Key is already taken (a replay, or a refusal) go through the ORM in a worker thread.
Run tokens and long polls always use the ORM: they are not hot.

Each unit of work runs in one worker thread, so the connection goes back to the pool before the
request waits for its next thread (or, in a long poll, for a change). A read counts against the
caller's org (`TRAINPORT_RATE_LIMIT_PER_ORG`) as soon as its statement has admitted the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from anyio import from_thread
from fastapi import Response, status
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api import telemetry
from api.etags import list_etag, matches, run_etag
from core.aio import AsyncDatabase
from core.code import sources as code_sources
from core.db import read_scope, session_scope
from core.ratelimit import RateLimiter
from core.runs import creation, reads, run_tokens, service
from core.runs.repository import RunFilter
from core.runs.schemas import RunOut, RunPage
from core.runs.spec import RunCreate
from core.runs.states import RunStatus
from core.runs.waiting import WaitingRoom
from core.runs.watch import wait_for_change
from core.scheduling import explain
from core.settings import Settings
from core.tenants import service as tenants
from core.tenants.schemas import Principal


@dataclass(frozen=True)
class RunQuery:
    """`GET /v1/runs`'s parameters, as the request gave them (see `api.routers.runs.RunFilterDep`).

    `query` is the request's query string: it tells one list's ETag from another's.
    """

    statuses: list[RunStatus]
    project: str | None
    labels: str | None
    name_prefix: str | None
    name: str | None
    created_after: datetime | None
    created_before: datetime | None
    changed_since: int | None
    limit: int
    after: str | None
    query: str

    def criteria(self, caller: Principal) -> RunFilter:
        """The filter, scoped to the caller's org; labels are parsed after authentication."""
        return service.run_filter(
            caller,
            [s.value for s in self.statuses],
            self.project,
            self.labels,
            self.name_prefix,
            self.name,
            self.created_after,
            self.created_before,
        )


class RunAccess(Protocol):
    """The one way the run routes reach the data (see the module docstring)."""

    async def create_run(
        self, caller: Principal, body: RunCreate, idempotency_key: str | None
    ) -> Response:
        """201 with the new run (or the replayed one, `Idempotent-Replayed: true`)."""
        ...

    async def read_run(
        self,
        secret: str | None,
        run_id: str,
        if_none_match: str | None,
        wait: int = 0,
        resource_version: int | None = None,
    ) -> Response:
        """The run (or 304); with `wait`, as soon as it changes past `resource_version`."""
        ...

    async def list_runs(
        self, secret: str | None, query: RunQuery, if_none_match: str | None
    ) -> Response:
        """A page of runs (or 304), or with `changed_since` the change feed's page."""
        ...


def run_json(
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


def _page_json(page: RunPage, etag: str) -> Response:
    return Response(page.model_dump_json(), media_type="application/json", headers={"ETag": etag})


def _not_modified(etag: str) -> Response:
    return Response(status_code=304, headers={"ETag": etag})


class ThreadpoolRunAccess:
    """Every run route's unit of work in one worker thread, through SQLAlchemy."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        read_engine: Engine,
        limiter: RateLimiter,
        waiting: WaitingRoom,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.read_engine = read_engine  # autocommit, no write lock (`core.db.read_engine`)
        self.limiter = limiter
        self.waiting = waiting

    # -- counting against the org (the limiter's counters live on the event loop)

    async def count(self, caller: Principal) -> None:
        await self.limiter.hit(self.limiter.per_org, caller.org_id)

    def count_from_thread(self, caller: Principal) -> None:
        from_thread.run(self.count, caller)

    # -- create

    async def create_run(
        self, caller: Principal, body: RunCreate, idempotency_key: str | None
    ) -> Response:
        body = await self._checked(caller, body)
        return await run_in_threadpool(self._create_in_thread, caller, body, idempotency_key)

    async def _checked(self, caller: Principal, body: RunCreate) -> RunCreate:
        """The code source checked (and a git ref resolved) in a session of its own."""
        if not code_sources.needs_checks(body, self.settings):
            return body

        def check() -> RunCreate:
            with session_scope(self.sessions) as session:
                return code_sources.check_at_submit(session, caller, self.settings, body)

        return await run_in_threadpool(check)

    def _create_in_thread(
        self, caller: Principal, body: RunCreate, idempotency_key: str | None
    ) -> Response:
        # One worker thread: insert, serialize and commit (the caller was settled at the edge).
        with session_scope(self.sessions) as session:
            created = service.create_run(
                session,
                caller,
                body,
                idempotency_key,
                self.settings.idempotency_ttl_hours,
                self.waiting,
            )
            headers = {"Location": f"/v1/runs/{created.run.id}"}
            if created.replayed:
                headers["Idempotent-Replayed"] = "true"
            run = explain.with_queue(session, created.run, self.settings, caller)
            return run_json(run, status.HTTP_201_CREATED, headers)

    # -- read one

    async def read_run(
        self,
        secret: str | None,
        run_id: str,
        if_none_match: str | None,
        wait: int = 0,
        resource_version: int | None = None,
    ) -> Response:
        if wait:
            return await self._follow(secret, run_id, wait, resource_version)
        if secret is not None and run_tokens.looks_like_run_token(secret):
            return await run_in_threadpool(self._orm_read, None, secret, run_id, if_none_match)
        return await self._read_by_key(secret, run_id, if_none_match)

    async def _read_by_key(
        self, secret: str | None, run_id: str, if_none_match: str | None
    ) -> Response:
        # An API key's plain or conditional GET: one statement in a worker thread (the run's
        # rows, core/runs/reads.py; a conditional GET compares their version), then back on the
        # event loop, where the limiter lives, it counts against the key's org and answers.
        # Counting from the thread instead was a round trip to the loop and back in every read.
        keyed = await run_in_threadpool(self._keyed_run, secret, run_id)
        await self.count(keyed[0])
        if if_none_match:
            etag = run_etag(reads.version_of(keyed, run_id))
            if matches(if_none_match, etag):
                return _not_modified(etag)
        run = reads.shown(keyed, run_id)
        if run is not None:
            return run_json(run)
        return await run_in_threadpool(self._orm_read, keyed[0], None, run_id, None)

    def _keyed_run(self, secret: str | None, run_id: str) -> reads.Keyed:
        with read_scope(self.read_engine) as conn:
            return reads.keyed_run(conn, secret, run_id, self.settings.key_touch_interval_seconds)

    def _orm_read(
        self,
        caller: Principal | None,
        secret: str | None,
        run_id: str,
        if_none_match: str | None,
    ) -> Response:
        """The ORM's read: `caller` given when authenticated (and counted) already; else the
        secret's (an API key's or a run token's), counted here. `if_none_match`: conditional."""
        with session_scope(self.sessions) as session:
            if caller is None:
                caller = self._run_caller(session, secret)
                self.count_from_thread(caller)
            if if_none_match:  # 304: one auth query and one version query
                version = service.run_version(session, caller, run_id)
                if version is not None and matches(if_none_match, run_etag(version)):
                    return _not_modified(run_etag(version))
            return run_json(explain.describe_run(session, caller, run_id, self.settings))

    def _run_caller(self, session: Session, secret: str | None) -> Principal:
        """An API key, or a run token (`tpr_...`)."""
        settings = self.settings
        if secret is None or not run_tokens.looks_like_run_token(secret):
            return tenants.authenticate(session, secret, settings.key_touch_interval_seconds)
        return run_tokens.authenticate(session, settings.secret_key.get_secret_value(), secret)

    async def _follow(
        self, secret: str | None, run_id: str, wait: int, resource_version: int | None
    ) -> Response:
        """A long poll: answers as soon as the run changes past `resource_version`."""

        def authenticated() -> Principal:
            with session_scope(self.sessions) as session:
                return self._run_caller(session, secret)

        def read_version() -> int | None:
            with session_scope(self.sessions) as session:
                return service.run_version(session, caller, run_id)

        caller = await run_in_threadpool(authenticated)
        await self.count(caller)
        baseline = resource_version
        if baseline is None:
            baseline = await run_in_threadpool(read_version) or 0
        timeout = min(wait, self.settings.long_poll_max_seconds)
        with telemetry.long_poll_open():
            await wait_for_change(
                run_id, baseline, timeout, lambda: run_in_threadpool(read_version)
            )
        return await run_in_threadpool(self._orm_read, caller, None, run_id, None)

    # -- list

    async def list_runs(
        self, secret: str | None, query: RunQuery, if_none_match: str | None
    ) -> Response:
        return await run_in_threadpool(self._list_in_thread, secret, query, if_none_match)

    def _list_in_thread(
        self, secret: str | None, query: RunQuery, if_none_match: str | None
    ) -> Response:
        # Reads only (`core.db.read_engine`): each statement sees what was committed before it,
        # as in a READ COMMITTED transaction, and none waits for a writer.
        touch_s = self.settings.key_touch_interval_seconds
        with read_scope(self.read_engine) as conn:
            caller = tenants.authenticate(conn, secret, touch_s)
            self.count_from_thread(caller)
            etag = list_etag(reads.org_version(conn, caller), query.query)
            if matches(if_none_match, etag):
                return _not_modified(etag)
            if query.changed_since is not None:
                page = reads.changes_page(
                    conn, caller, query.changed_since, query.limit, query.project
                )
            else:
                page = reads.list_page(
                    conn, caller, query.criteria(caller), query.limit, query.after
                )
        return _page_json(page, etag)


class EventLoopRunAccess(ThreadpoolRunAccess):
    """The hot routes on the event loop through asyncpg; the rest as `ThreadpoolRunAccess`."""

    def __init__(
        self,
        db: AsyncDatabase,
        settings: Settings,
        sessions: sessionmaker[Session],
        read_engine: Engine,
        limiter: RateLimiter,
        waiting: WaitingRoom,
    ) -> None:
        super().__init__(settings, sessions, read_engine, limiter, waiting)
        self.db = db

    async def create_run(
        self, caller: Principal, body: RunCreate, idempotency_key: str | None
    ) -> Response:
        # Written in one statement (core/runs/creation.py); a retry whose Idempotency-Key is
        # taken is answered through the ORM (a replay, or a refusal of a different body).
        body = await self._checked(caller, body)
        run = await creation.create_async(
            self.db, caller, body, idempotency_key, self.settings, self.waiting
        )
        if run is None:
            return await run_in_threadpool(self._create_in_thread, caller, body, idempotency_key)
        return run_json(run, status.HTTP_201_CREATED, {"Location": f"/v1/runs/{run.id}"})

    async def _read_by_key(
        self, secret: str | None, run_id: str, if_none_match: str | None
    ) -> Response:
        touch_s = self.settings.key_touch_interval_seconds
        if if_none_match:
            keyed = await reads.keyed_version_async(self.db, secret, run_id, touch_s)
            await self.count(keyed[0])
            version = reads.version_of(keyed, run_id)
            if matches(if_none_match, run_etag(version)):
                return _not_modified(run_etag(version))
        keyed = await reads.keyed_run_async(self.db, secret, run_id, touch_s)
        if not if_none_match:
            await self.count(keyed[0])
        run = reads.shown(keyed, run_id)
        if run is not None:
            return run_json(run)
        return await run_in_threadpool(self._orm_read, keyed[0], None, run_id, None)

    async def list_runs(
        self, secret: str | None, query: RunQuery, if_none_match: str | None
    ) -> Response:
        touch_s = self.settings.key_touch_interval_seconds
        caller = await tenants.authenticate_async(self.db, secret, touch_s)
        await self.count(caller)
        etag = list_etag(await reads.org_version_async(self.db, caller), query.query)
        if matches(if_none_match, etag):
            return _not_modified(etag)
        if query.changed_since is not None:
            page = await reads.changes_async(
                self.db, caller, query.changed_since, query.limit, query.project
            )
        else:
            page = await reads.list_async(
                self.db, caller, query.criteria(caller), query.limit, query.after
            )
        return _page_json(page, etag)

"""Queries on PostgreSQL from the event loop itself: asyncpg, no worker thread.

The hottest request, `GET /v1/runs/{id}`, is one statement (core/runs/reads.py). Through the
sync engine it also pays for a hop into FastAPI's threadpool and for SQLAlchemy's execution
layers, which together cost several times a whole bare request (bench/README.md). Here the same
Core statements, compiled once by SQLAlchemy for asyncpg's `$n` parameters, run on an asyncpg
pool in autocommit (one statement is its own snapshot, as with `core.db.read_engine`).

What SQLAlchemy's result processing would do is done by the connection's codecs: JSON and JSONB
decode to Python objects (with pydantic-core, as `core.db` does), and `timestamptz` arrives as
an aware UTC datetime, which is what `core.models.UTCDateTime` returns. Only PostgreSQL: SQLite
keeps the threadpool path.

Besides the reads, one write runs here: a run's creation, as one statement
(core/runs/creation.py). Reads are repeated once on a connection the server closed; a write
never is, since it may have committed before the connection went. A server that cannot be
reached, or refuses work for now, is a `DatabaseUnavailable` (503 with Retry-After).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import pydantic_core
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Executable

from core.errors import DatabaseUnavailable

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]  # `$1, $2, ...` parameters

Rows = Sequence[Mapping[str, Any]]
APPLICATION_NAME = "trainport-api-async"  # as pg_stat_activity shows these connections


def asyncpg_dsn(database_url: str) -> str:
    """`postgresql+psycopg://...` as asyncpg spells it (no driver suffix)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def _with_codecs(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=json.dumps, decoder=pydantic_core.from_json, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """On release, nothing to undo: these connections never LISTEN, lock, SET or open cursors.

    (asyncpg's default reset is one more round trip per request.)
    """


# What asyncpg raises when the server cannot be reached, went away, or refuses work for now
# (starting up, shutting down, out of connections, a statement cancelled): a retry may succeed.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


@contextmanager
def _unavailable_raised() -> Iterator[None]:
    """Such failures as `DatabaseUnavailable` (a 503 with Retry-After), not as a 500."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable() from exc


def _gone(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:  # the pool already took it back: it saw the connection die
        return True


@dataclass(frozen=True)
class _Compiled:
    """A statement compiled for asyncpg, and how to lay its parameters out as `$1, $2, ...`."""

    compiled: SQLCompiler
    # Each `$n`'s name, whether the caller must give it, and the value bound in the statement;
    # None when SQLAlchemy must expand the statement per call (an IN list: one `$n` per item).
    order: tuple[tuple[str, bool, Any], ...] | None

    @classmethod
    def of(cls, statement: Executable) -> _Compiled:
        compiled = cast(SQLCompiler, statement.compile(dialect=_DIALECT))  # type: ignore[attr-defined]
        if compiled.post_compile_params or compiled.escaped_bind_names:
            return cls(compiled, None)
        binds = compiled.binds
        names = compiled.positiontup or []
        return cls(compiled, tuple((n, binds[n].required, binds[n].value) for n in names))

    def arguments(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and the values in `$n` order.

        `params` fill the statement's named parameters; values bound inside it are taken as
        they are. Bind processors are not applied: the statements given here bind strings,
        numbers and aware datetimes, which asyncpg encodes itself.
        """
        if self.order is None:
            state = self.compiled.construct_expanded_state(dict(params))
            return state.statement, list(state.positional_parameters)
        # The common case, without SQLAlchemy's per-call expansion (a sizeable share of a GET).
        values = [params[n] if needed else params.get(n, v) for n, needed, v in self.order]
        return self.compiled.string, values


class AsyncDatabase:
    """A small asyncpg pool that runs prepared Core statements and returns their rows."""

    def __init__(self, database_url: str, max_size: int) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._compiled: dict[Executable, _Compiled] = {}

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn,
            # No connection at start: the API starts, and /readyz answers, without the database.
            min_size=0,
            max_size=self._max_size,
            init=_with_codecs,
            reset=_keep_session,
            # A connection that has been idle long is replaced rather than trusted.
            max_inactive_connection_lifetime=60,
            server_settings={"application_name": APPLICATION_NAME},
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _compile(self, statement: Executable, cache: bool) -> _Compiled:
        compiled = self._compiled.get(statement) if cache else None
        if compiled is None:
            compiled = _Compiled.of(statement)
            if cache:
                self._compiled[statement] = compiled
        return compiled

    @staticmethod
    async def _fetch_once(
        pool: asyncpg.Pool, sql: str, arguments: list[Any]
    ) -> list[asyncpg.Record] | None:
        """The rows, or None when the connection turned out to be closed by the server."""
        async with pool.acquire() as conn:
            try:
                return await conn.fetch(sql, *arguments)
            except (asyncpg.ConnectionDoesNotExistError, asyncpg.AdminShutdownError):
                return None
            except (asyncpg.InterfaceError, asyncpg.InternalClientError):
                # Depending on when the server's goodbye arrives, asyncpg may report it as
                # a confused protocol state; what tells is whether the connection is gone.
                if _gone(conn):
                    return None
                raise

    def _statement(
        self, statement: Executable, params: Mapping[str, Any], cache: bool
    ) -> tuple[asyncpg.Pool, str, list[Any]]:
        if self._pool is None:
            raise RuntimeError("AsyncDatabase.open() was not awaited")
        return (self._pool, *self._compile(statement, cache).arguments(params))

    async def write(self, statement: Executable, params: Mapping[str, Any]) -> Rows:
        """The rows of a statement that changes data: one autocommit transaction, never repeated.

        A connection lost while it ran leaves it unknown whether it committed, so the error
        reaches the caller (a 503; clients that retry send an Idempotency-Key). A connection
        that was already dead when taken is still found out first: the request's reads (the
        key) run before its write, and a dead connection they meet replaces the pool's.
        """
        pool, sql, arguments = self._statement(statement, params, cache=True)
        with _unavailable_raised():
            return cast(Rows, await pool.fetch(sql, *arguments))

    async def fetch(
        self, statement: Executable, params: Mapping[str, Any], *, cache: bool = True
    ) -> Rows:
        """The statement's rows. `cache=False` for statements built per call."""
        pool, sql, arguments = self._statement(statement, params, cache)
        with _unavailable_raised():
            rows = await self._fetch_once(pool, sql, arguments)
            if rows is None:
                # The server closed the connection (a restart, an administrator) before the
                # pool noticed. Whatever closed one has likely closed the others: replace them
                # all, then repeat, which is safe for these statements (reads, the key's touch).
                await pool.expire_connections()
                rows = await pool.fetch(sql, *arguments)
        return cast(Rows, rows)

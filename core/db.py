"""Engine and session factory: PostgreSQL (psycopg 3) in production, SQLite when embedded.

One session per request or task; services only flush, the owner of the session commits.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydantic_core
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    String,
    any_,
    create_engine,
    event,
    literal,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from core.settings import Settings

# A pooled connection idle longer than this is pinged before use (see `_ping_when_idle`).
PING_IF_IDLE_SECONDS = 1.0
SQLITE_BUSY_TIMEOUT_MS = 30_000
# JSON columns (JSONB on PostgreSQL, text on SQLite) decoded by pydantic-core's parser: run
# specs several times faster than json.loads (about 9% of a 50-run list's CPU, bench/README.md).
_from_json = pydantic_core.from_json


class QueuedSQLiteConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions queue on a lock file beside the database.

    Every transaction here is `BEGIN IMMEDIATE`: it takes SQLite's one write lock up front. A
    connection that finds the lock held does not wait on it: SQLite's busy handler sleeps 1, 2,
    5 ... then 100 ms at a time and retries, so a waiter wakes long after the lock came free,
    and one that keeps losing the race to the threads of the process that holds it (the API's
    threads against the embedded workers', or the reverse) waits many rounds. That was the
    embedded mode's submit tail (p99 0.5-1 s, 3 s with 4 clients: bench/README.md, issue 17).
    So the transaction first takes an exclusive `flock` on `<database>.writer`, which the
    kernel hands to a waiter the moment the holder lets go (across threads and processes: each
    connection opens the file itself), and lets go once its COMMIT or ROLLBACK is done. SQLite's
    own lock and busy_timeout still guard against anything that does not queue (migrations,
    another program). The file is opened per process, so a forked child never shares a lock.
    """

    queue_path: str | None = None
    _queue: tuple[int, int] | None = None  # (pid, fd)

    def queue_for_write(self) -> None:
        if self.queue_path is None:
            return
        pid = os.getpid()
        if self._queue is None or self._queue[0] != pid:
            self._queue = (pid, os.open(self.queue_path, os.O_RDWR | os.O_CREAT, 0o600))
        fcntl.flock(self._queue[1], fcntl.LOCK_EX)

    def leave_queue(self) -> None:
        if self._queue is not None and self._queue[0] == os.getpid():
            fcntl.flock(self._queue[1], fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_queue()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_queue()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._queue is not None and self._queue[0] == os.getpid():
                os.close(self._queue[1])  # closing the file also lets go of the lock
            self._queue = None


def _prepare_sqlite(engine: Engine, url: str) -> None:
    path = url.split("///", 1)[-1]
    on_disk = bool(path) and path != ":memory:"
    if on_disk:
        Path(path).parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets readers run beside the single writer (it is the database's, set once here).
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        # Let SQLAlchemy issue BEGIN IMMEDIATE so a write transaction takes the lock up front.
        _connection_pragmas(dbapi_conn)
        if on_disk and isinstance(dbapi_conn, QueuedSQLiteConnection):
            dbapi_conn.queue_path = f"{path}.writer"

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        dbapi_conn = conn.connection.dbapi_connection
        if isinstance(dbapi_conn, QueuedSQLiteConnection):
            dbapi_conn.queue_for_write()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if isinstance(dbapi_conn, QueuedSQLiteConnection):
                dbapi_conn.leave_queue()  # the transaction never began
            raise


def build_engine(settings: Settings) -> Engine:
    """Create the engine for `settings.database_url`, tuned for its dialect."""
    url = settings.database_url
    if settings.is_sqlite:
        connect_args = {"check_same_thread": False, "factory": QueuedSQLiteConnection}
        engine = create_engine(url, connect_args=connect_args, json_deserializer=_from_json)
        _prepare_sqlite(engine, url)
        return engine
    engine = create_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        json_deserializer=_from_json,
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling without a round trip for connections in steady use.

    `pool_pre_ping` pings on every checkout: half the round trips of a `GET /v1/runs/{id}`. A
    connection handed back moments ago is as alive as a ping would show (one that dies between
    the ping and the query fails the request either way), so, like HikariCP's alive-bypass
    window, only a connection idle past `PING_IF_IDLE_SECONDS` is pinged. A failed ping raises
    DisconnectionError, on which the pool replaces the connection and checks out again.
    """

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _in_use_until_now(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_IF_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("the pooled connection no longer answers") from exc


def read_engine(engine: Engine) -> Engine:
    """`engine` for reads of one statement: no BEGIN/COMMIT around it, no write lock.

    One statement is its own snapshot, so autocommit changes nothing it can see. On PostgreSQL
    it shares the engine's pool (the level is set on checkout, reset on return). On SQLite every
    transaction of `engine` is `BEGIN IMMEDIATE` behind the writer queue, so a read would wait
    for each worker's write (and the API's reads for each other): the reader is a pool of its
    own whose statements run in SQLite's autocommit mode, which in WAL read the last commit
    beside an open write transaction. Its rare write (an API key's touch) commits alone, and
    waits on SQLite's busy handler rather than the queue.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return engine  # an in-memory database is one connection's: there is no other reader
    connect_args = {"check_same_thread": False}
    reader = create_engine(engine.url, connect_args=connect_args, json_deserializer=_from_json)

    @event.listens_for(reader, "connect")
    def _autocommit(dbapi_conn: Any, _record: Any) -> None:
        _connection_pragmas(dbapi_conn)  # and no BEGIN: nothing here issues one

    return reader


def _connection_pragmas(dbapi_conn: Any) -> None:
    """What every SQLite connection of ours sets: busy_timeout makes a writer that does not
    queue (migrations, another program, a reader's rare write) wait instead of failing; foreign
    keys are off by default in SQLite; and sqlite3 issues no BEGIN of its own."""
    dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    dbapi_conn.execute("PRAGMA foreign_keys=ON")
    dbapi_conn.isolation_level = None


_read_factories: weakref.WeakKeyDictionary[Engine, sessionmaker[Session]] = (
    weakref.WeakKeyDictionary()
)
_read_factories_lock = threading.Lock()


def read_sessions(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions on `read_engine` of `factory`'s engine (one pool per engine): for a step that
    only reads, so that on SQLite it neither takes nor waits for the write lock."""
    engine = factory.kw["bind"]
    with _read_factories_lock:
        found = _read_factories.get(engine)
        if found is None:
            found = _read_factories[engine] = make_sessionmaker(read_engine(engine))
        return found


@contextmanager
def read_scope(engine: Engine) -> Iterator[Connection]:
    """A connection for reads from `read_engine` (and a best-effort touch): committed at the end."""
    with engine.connect() as conn:
        yield conn
        conn.commit()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work: commit when the block ends cleanly, roll back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def among(
    session: Session, column: InstrumentedAttribute[str], values: Collection[str]
) -> ColumnElement[bool]:
    """`column IN values`, for sets as large as every active run's id: on PostgreSQL as one
    array parameter (`column = ANY(:values)`). An IN of 5,000 placeholders took ~60 ms more to
    render and for psycopg to parse (uncached: each statement differs) than the query itself
    (bench/README.md, issue 17's scale check); SQLite has no arrays, and no parse cost to save."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(list(values), ARRAY(String)))
    return column.in_(values)

"""Engine and session factory: PostgreSQL (psycopg 3) in production, SQLite when embedded.

One session per request or task; services only flush, the owner of the session commits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydantic_core
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings

# A pooled connection idle longer than this is pinged before use (see `_ping_when_idle`).
PING_IF_IDLE_SECONDS = 1.0


def _prepare_sqlite(engine: Engine, url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets readers run beside the single writer; busy_timeout queues writers instead of
        # failing them; foreign keys are off by default in SQLite.
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()
        # Let SQLAlchemy issue BEGIN IMMEDIATE so a write transaction takes the lock up front.
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def build_engine(settings: Settings) -> Engine:
    """Create the engine for `settings.database_url`, tuned for its dialect."""
    url = settings.database_url
    if settings.is_sqlite:
        engine = create_engine(url, connect_args={"check_same_thread": False})
        _prepare_sqlite(engine, url)
        return engine
    engine = create_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        # JSONB arrives as bytes; pydantic-core's parser decodes run specs several times faster
        # than json.loads (about 9% of a 50-run list's CPU, see bench/README.md).
        json_deserializer=pydantic_core.from_json,
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
    """`engine` for reads of one statement: no BEGIN/COMMIT round trips around it on PostgreSQL.

    One statement is its own snapshot, so autocommit changes nothing it can see. It shares the
    engine's pool (the level is set on checkout, reset on return). SQLite keeps its transaction.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


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

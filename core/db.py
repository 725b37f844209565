"""Engine and session factory: PostgreSQL (psycopg 3) in production, SQLite when embedded.

One session per request or task; services only flush, the owner of the session commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydantic_core
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings


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
    return create_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=True,
        # JSONB arrives as bytes; pydantic-core's parser decodes run specs several times faster
        # than json.loads (about 9% of a 50-run list's CPU, see bench/README.md).
        json_deserializer=pydantic_core.from_json,
    )


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

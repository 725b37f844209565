"""Databases of a test's own (a pytest plugin, registered for the whole suite by tests/conftest.py).

Scheduling state is global (clusters, the queue), so the tests of the scheduler, the workers and
the security of launches do not share the session's database: each test (or module) gets its
own, cloned in milliseconds from a template that Alembic migrated once. The template is made
only when a test asks for one of these fixtures.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.app_state import app_engine
from core import db, migrate
from core.settings import Settings
from tests.support.postgres import admin_execute, clone_database, database_url, drop_database


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A migrated database that fresh ones are cloned from (its name)."""
    name = f"trainport_wtmpl_{secrets.token_hex(4)}"
    admin_execute(f'CREATE DATABASE "{name}"')
    migrate.upgrade(database_url(name))
    yield name
    drop_database(name)


@pytest.fixture
def make_database(template_db: str) -> Iterator[Callable[[], str]]:
    """Clone fresh, migrated databases; every one is dropped when the test ends."""
    made: list[str] = []

    def clone() -> str:
        made.append(clone_database(template_db))
        return database_url(made[-1])

    yield clone
    for name in made:
        drop_database(name)


@pytest.fixture
def fresh_url(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture
def factory(fresh_url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.build_engine(Settings(database_url=fresh_url))
    yield db.make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def fresh_client(fresh_url: str) -> Iterator[TestClient]:
    """The API on this test's own database (no lifespan: nothing here long-polls)."""
    app = create_app(Settings(database_url=fresh_url, key_touch_interval_seconds=0))
    yield TestClient(app, raise_server_exceptions=False)
    app_engine(app).dispose()


@contextmanager
def write_lock_held(
    engine: Engine, statement: str, params: dict[str, Any] | None = None
) -> Iterator[None]:
    """`statement` in a write transaction of another thread, left open for the block: on
    SQLite, the database's one write lock (and its writer queue) held meanwhile."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.begin() as conn:
            conn.execute(text(statement), params or {})
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold, name="write-lock-holder")
    holder.start()
    try:
        assert holding.wait(10), "the holder never got the write lock"
        yield
    finally:
        release.set()
        holder.join()


@contextmanager
def statements_run(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements `engine` ran during the block (filled in as they run)."""
    seen: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)

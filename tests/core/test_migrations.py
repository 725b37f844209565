"""Alembic is the only way a schema is made: it upgrades from empty, downgrades back, and agrees
with the ORM models on PostgreSQL and on the embedded SQLite file alike."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from core import migrate
from core.models import Base
from tests.support.postgres import ADMIN_URL, admin_dsn


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    name = f"trainport_migrations_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'trainport.db'}"


@pytest.fixture(params=["postgres", "sqlite"])
def empty_database(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"empty_{request.param}")
    return url


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _schema_diffs(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_from_empty_creates_every_model_table(empty_database: str) -> None:
    migrate.upgrade(empty_database)

    assert _tables(empty_database) == set(Base.metadata.tables)


def test_models_and_migrations_agree_after_upgrade(empty_database: str) -> None:
    migrate.upgrade(empty_database)

    assert _schema_diffs(empty_database) == []


def test_downgrade_to_base_removes_every_table_and_upgrade_works_again(
    empty_database: str,
) -> None:
    migrate.upgrade(empty_database)
    migrate.downgrade(empty_database, "base")
    assert _tables(empty_database) == set()

    migrate.upgrade(empty_database)
    assert _tables(empty_database) == set(Base.metadata.tables)
    assert _schema_diffs(empty_database) == []

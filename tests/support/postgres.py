"""The PostgreSQL server the tests run on: its admin URL, and databases made and dropped there.

Plain functions; tests/conftest.py's session database and tests/support/databases.py's fixtures
are built from them.
"""

from __future__ import annotations

import os
import secrets

import psycopg
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get(
    "TRAINPORT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def admin_dsn() -> str:
    """The admin URL as psycopg takes it (no SQLAlchemy driver name)."""
    return make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)


def admin_execute(sql: str) -> None:
    """One statement as the admin, outside a transaction (CREATE or DROP DATABASE)."""
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(sql)


def database_url(name: str) -> str:
    """The SQLAlchemy URL of the database `name` on the test server."""
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def clone_database(template: str) -> str:
    """A new database copied from `template` (its name); the caller drops it."""
    name = f"trainport_w_{secrets.token_hex(4)}"
    admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def drop_database(name: str) -> None:
    admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

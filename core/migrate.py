"""Schema upgrades through Alembic, for the server's prestart step, the embedded mode and tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import SQLAlchemyError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def schema_problem(database_url: str) -> str | None:
    """Why the database at `database_url` cannot be used as it is, or None when its schema is
    current. Never creates anything: a missing SQLite file stays missing."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database or "").resolve()
        if not path.exists():
            return f"there is no database file at {path}"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        return f"it cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    finally:
        engine.dispose()
    if current is None:
        return "it has no Trainport schema yet (it was never migrated)"
    head = head_revision()
    if current != head:
        return f"its schema is at revision {current}, and this version needs {head}"
    return None

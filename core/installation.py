"""This installation's id: what tells its cluster objects from another Trainport's.

Two installations may share a Kubernetes namespace; each labels what it makes with its id and
lists, watches and deletes only objects carrying it. `TRAINPORT_INSTALLATION_ID` sets it; left
empty, one is made the first time any worker asks and stored in the database (a row of
`version_counters`, so no schema change), because the database is what an installation is:
every worker and API replica of one installation shares it, whatever URL each spells it with,
and a dump restored elsewhere keeps it. Deriving it from the URL instead would give two workers
that name the host differently two ids, and each would then miss the other's Jobs.
"""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import build_engine, make_sessionmaker, session_scope
from core.models import VersionCounter
from core.settings import Settings

ROW = "installation"  # its value is the id as a number, never incremented


def installation_id(settings: Settings) -> str:
    """The configured id, else the one stored in the database (made on first use)."""
    if settings.installation_id:
        return settings.installation_id
    engine = build_engine(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            return installation_in(session, settings)
    finally:
        engine.dispose()


def installation_in(session: Session, settings: Settings) -> str:
    """`installation_id`, read in the caller's session (a plan's: core/scheduling/preflight.py)."""
    return settings.installation_id or f"db-{stored_number(session):012x}"


def stored_number(session: Session) -> int:
    row = session.get(VersionCounter, ROW)
    if row is None:
        try:
            with session.begin_nested():  # another process may be storing its own right now
                session.add(VersionCounter(name=ROW, value=secrets.randbits(48)))
        except IntegrityError:
            pass  # it won: read what it stored
        row = session.get(VersionCounter, ROW, populate_existing=True)
    assert row is not None
    return int(row.value)

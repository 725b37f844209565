"""Timestamps come back timezone-aware in UTC on SQLite, whatever wrote them (core/models.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text

from core import db
from core.models import UTCDateTime
from core.settings import Settings

pytestmark = pytest.mark.fast

STAMPS = Table(
    "stamps", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime)
)


def test_timestamps_read_back_as_the_same_instant_in_utc(tmp_path: Path) -> None:
    engine = db.build_engine(Settings(database_url=f"sqlite:///{tmp_path / 'stamps.db'}"))
    STAMPS.create(engine)
    written = {
        1: datetime(2026, 12, 4, 23, 24, 57, 485002, tzinfo=UTC),
        2: datetime(2026, 12, 4, 23, 24, 57, tzinfo=UTC),  # no microseconds
        3: datetime(2026, 12, 5, 1, 0, tzinfo=timezone(timedelta(hours=2))),  # another zone
        4: None,
    }
    with engine.begin() as conn:
        conn.execute(insert(STAMPS), [{"id": k, "at": v} for k, v in written.items()])
        # as SQLite's own CURRENT_TIMESTAMP (a migration's default) writes it
        conn.execute(text("INSERT INTO stamps VALUES (5, '2026-01-02 03:04:05')"))
    for reader in (engine, db.read_engine(engine)):
        with reader.connect() as conn:
            read = {row.id: row.at for row in conn.execute(select(STAMPS.c.id, STAMPS.c.at))}
        assert read == {**written, 5: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
        assert all(v is None or v.tzinfo == UTC for v in read.values())
        reader.dispose()


def test_a_naive_timestamp_is_refused(tmp_path: Path) -> None:
    engine = db.build_engine(Settings(database_url=f"sqlite:///{tmp_path / 'stamps.db'}"))
    STAMPS.create(engine)
    with pytest.raises(Exception, match="naive datetimes are not stored"), engine.begin() as conn:
        conn.execute(insert(STAMPS), [{"id": 1, "at": datetime(2026, 1, 1)}])
    engine.dispose()

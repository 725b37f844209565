"""The embedded relay polls with reads: idle, it takes no write lock from the API (issue 17)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from core import db, migrate, outbox
from core.db import session_scope
from core.settings import Settings
from workers import relay


def test_an_idle_embedded_relay_opens_no_write_transaction_and_still_publishes(
    tmp_path: Path,
) -> None:
    """Before, every 25 ms poll was a `BEGIN IMMEDIATE` claim: 40 takes a second of the one
    write lock a `POST /v1/runs` needs. Now a read-only poll finds nothing unsent and waits."""
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    migrate.upgrade(url)
    published: list[dict[str, Any]] = []
    loop = relay.Relay(
        Settings(database_url=url, relay_poll_seconds=0.01),
        lambda _task, payload: published.append(payload),
    )
    begins: list[float] = []
    event.listen(loop.engine, "begin", lambda _conn: begins.append(time.monotonic()))
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    engine = db.build_engine(Settings(database_url=url))
    try:
        deadline = time.monotonic() + 10
        while not begins and time.monotonic() < deadline:  # bounded: its first round
            time.sleep(0.01)
        idle_from = time.monotonic() + 0.2  # the first round's transactions are done by then
        while time.monotonic() < idle_from + 0.5:  # half a second idle: 50 polls
            time.sleep(0.05)
        assert [at for at in begins if at > idle_from] == []
        with session_scope(db.make_sessionmaker(engine)) as session:
            outbox.enqueue(session, outbox.Task.SCHEDULE, number=1)
        deadline = time.monotonic() + 10
        while not published and time.monotonic() < deadline:  # bounded: another thread
            time.sleep(0.01)
    finally:
        loop.stop()
        thread.join(timeout=10)
        engine.dispose()
    assert [payload["number"] for payload in published] == [1]

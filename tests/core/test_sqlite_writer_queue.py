"""The embedded mode's write transactions queue on `<database>.writer` (issue 17).

SQLite's busy handler makes a blocked writer sleep 1, 2, 5 ... 100 ms between tries, so it
started up to ~100 ms after the lock came free, and lost the race to the holder's own threads
again and again: the 0.5-1 s (and, with 4 clients, 3 s) submit tails of the embedded mode.
Each write transaction now takes an exclusive flock first, held exactly as long as SQLite's lock,
which the kernel hands to the next waiter at once.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, text

from core import db
from core.settings import Settings
from tests.support.databases import write_lock_held

HOLD_S = 0.44  # SQLite's busy handler would next look at ~0.53 s: about 90 ms late


def _engine(tmp_path: Path) -> Engine:
    engine = db.build_engine(Settings(database_url=f"sqlite:///{tmp_path / 'queue.db'}"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    return engine


def _queue_free(path: Path) -> bool:
    """Whether another open file description could take the writer lock right now."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_a_write_transaction_holds_the_queue_until_commit_or_rollback(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    queue = tmp_path / "queue.db.writer"
    for end in ("commit", "rollback"):
        with engine.connect() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            assert not _queue_free(queue)
            getattr(conn, end)()
            assert _queue_free(queue)
    engine.dispose()


def test_a_blocked_writer_starts_as_soon_as_the_lock_is_free(tmp_path: Path) -> None:
    """Best of 3: how long after the holder's COMMIT the waiting transaction got in."""
    engine = _engine(tmp_path)
    lateness = []
    for _ in range(3):
        holding, committed = threading.Event(), [0.0]

        def hold(holding: threading.Event, committed: list[float]) -> None:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (1)"))
                holding.set()
                time.sleep(HOLD_S)  # a long write transaction: the waiter is blocked meanwhile
            committed[0] = time.perf_counter()

        holder = threading.Thread(target=hold, args=(holding, committed))
        holder.start()
        assert holding.wait(10)
        with engine.begin() as conn:
            got_in = time.perf_counter()
            conn.execute(text("INSERT INTO t VALUES (2)"))
        holder.join()
        lateness.append(got_in - committed[0])
    engine.dispose()
    assert min(lateness) < 0.04, lateness


def test_a_read_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """The API's reads (`db.read_engine`: a run, a page, a key) take no write lock: in WAL they
    read the last commit beside an open write transaction, as on PostgreSQL, instead of queueing
    behind every worker's transaction (and each other)."""
    engine = _engine(tmp_path)
    reader = db.read_engine(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with write_lock_held(engine, "INSERT INTO t VALUES (2)"):
        started = time.perf_counter()
        with db.read_scope(reader) as conn:
            seen = conn.execute(text("SELECT count(*) FROM t")).scalar_one()
        waited = time.perf_counter() - started
        assert not _queue_free(tmp_path / "queue.db.writer")  # the writer still holds it
    assert seen == 1  # the last commit, not the open transaction's row
    assert waited < 1.0, waited
    with db.read_scope(reader) as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 2
    reader.dispose()
    engine.dispose()


def test_a_read_scope_may_still_write_once(tmp_path: Path) -> None:
    """A read scope's one best-effort write (an API key's touch) commits on its own."""
    engine = _engine(tmp_path)
    reader = db.read_engine(engine)
    with db.read_scope(reader) as conn:
        conn.execute(text("INSERT INTO t VALUES (3)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalars().all() == [3]
    reader.dispose()
    engine.dispose()

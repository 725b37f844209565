"""Change notifications for long polls: who wants to hear that a run changed, and telling them.

A transaction that changes a run records the run id on its session. On commit the ids are
published to this process's hub; on PostgreSQL they also go out as `NOTIFY`, delivered by the
database only once the transaction commits, and every API process's listener thread feeds them
to its own hub. On SQLite (the embedded mode) nothing carries notifications between processes,
so a watcher thread reads the global run version every few milliseconds instead and wakes every
waiter when it moves. Waiters are asyncio events, so a waiting client holds no database connection.

The same listener feeds a second hub, `log_hub`: an append to a run's log (core/log_archive.py)
sends `NOTIFY trainport_log_appends` with the run id, which wakes that run's log followers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterable

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

CHANNEL = "trainport_run_changes"
LOG_CHANNEL = "trainport_log_appends"  # a run's log grew (core/log_archive.py)
_SESSION_KEY = "trainport.changed_runs"
ANY_RUN = "*"  # subscribe with this to wake on a change to any run (core/events/stream.py)
log = logging.getLogger(__name__)


class ChangeHub:
    """Thread-safe fan-out from 'run X changed' to the asyncio waiters interested in X."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = (
            defaultdict(set)
        )

    def subscribe(self, run_id: str) -> asyncio.Event:
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters[run_id].add(waiter)
        return waiter[1]

    def unsubscribe(self, run_id: str, flag: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(run_id, set())
            waiters.difference_update({w for w in waiters if w[1] is flag})
            if not waiters:
                self._waiters.pop(run_id, None)

    def publish(self, run_ids: Iterable[str]) -> None:
        with self._lock:
            ids = list(run_ids)
            targets = [w for run_id in ids for w in self._waiters.get(run_id, ())]
            if ids:  # the event pumps (core/events/stream.py) hear of every run's change
                targets += self._waiters.get(ANY_RUN, ())
        for loop, flag in targets:
            if not loop.is_closed():
                loop.call_soon_threadsafe(flag.set)

    def wake_all(self) -> None:
        """After a lost listener connection: notifications may be gone, so everyone re-checks."""
        with self._lock:
            run_ids = list(self._waiters)
        self.publish(run_ids)


hub = ChangeHub()
log_hub = ChangeHub()  # followers of run logs, by run id


def record_change(session: Session, run_id: str) -> None:
    session.info.setdefault(_SESSION_KEY, set()).add(run_id)


@event.listens_for(Session, "before_commit")
def _notify_database(session: Session) -> None:
    changed: set[str] = session.info.get(_SESSION_KEY, set())
    bind = session.get_bind()
    if changed and bind.dialect.name == "postgresql":
        for run_id in sorted(changed):
            session.execute(
                text("SELECT pg_notify(:channel, :id)"), {"channel": CHANNEL, "id": run_id}
            )


@event.listens_for(Session, "after_commit")
def _notify_process(session: Session) -> None:
    changed: set[str] = session.info.pop(_SESSION_KEY, set())
    if changed:
        hub.publish(changed)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_SESSION_KEY, None)


class PostgresListener:
    """A daemon thread that LISTENs on one dedicated connection and feeds the hub."""

    def __init__(
        self,
        database_url: str,
        target: ChangeHub = hub,
        poll: float = 1.0,
        logs: ChangeHub = log_hub,
    ) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._hubs = {CHANNEL: target, LOG_CHANNEL: logs}
        self._poll = poll  # how often, at most, the thread looks up from its wait to stop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trainport-listen", daemon=True)
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # a lost connection is retried, never fatal
                log.warning("change listener lost its connection (%s); reconnecting", exc)
                for target in self._hubs.values():
                    target.wake_all()
                self._stop.wait(1.0)

    def _listen(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            for channel in self._hubs:
                conn.execute(f"LISTEN {channel}")
            self.ready.set()
            while not self._stop.is_set():
                # stop_after: hand over what arrived at once. (Without it the generator keeps
                # collecting until the timeout, and every waiter would wake up to 1 s late.)
                for arrived in conn.notifies(timeout=self._poll, stop_after=1):
                    self._hubs[arrived.channel].publish([arrived.payload])


class SqliteVersionWatcher:
    """The embedded mode's LISTEN: wakes this process's waiters on changes made by other ones.

    A daemon thread reads the `runs` version counter every `interval` seconds on a read-only
    connection of its own (WAL: it never waits for a writer, nor makes one wait) and, when the
    value moved, wakes every waiter to re-check its run. So a change committed by the embedded
    workers reaches a long poll within one interval.
    """

    def __init__(self, database_url: str, interval: float = 0.1, target: ChangeHub = hub) -> None:
        self._uri = f"file:{make_url(database_url).database}?mode=ro"
        self._interval = interval
        self._hub = target
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trainport-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        seen: int | None = None
        while not self._stop.wait(self._interval):
            try:
                with contextlib.closing(sqlite3.connect(self._uri, uri=True)) as conn:
                    seen = self._watch(conn, seen)
            except sqlite3.Error as exc:  # no file or no schema yet: try again next interval
                log.debug("version watcher cannot read the database (%s)", exc)

    def _watch(self, conn: sqlite3.Connection, seen: int | None) -> int | None:
        while not self._stop.is_set():
            row = conn.execute("SELECT value FROM version_counters WHERE name = 'runs'").fetchone()
            version = None if row is None else int(row[0])
            if version != seen:
                self._hub.wake_all()
                seen = version
            self._stop.wait(self._interval)
        return seen

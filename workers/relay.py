"""The outbox relay: publishes committed outbox rows to the broker, at least once.

Run it as `python -m workers.relay` (production: one or more replicas beside the workers; the
embedded mode starts one in `workers.embedded`). Each round claims a batch of unsent rows
(`FOR UPDATE SKIP LOCKED`, so several relays share the work), publishes them with no
transaction open, then marks them sent. If the broker is down the rows stay unsent and the
relay retries with backoff; a run created meanwhile simply starts once the broker is back.

It wakes on PostgreSQL `NOTIFY trainport_outbox` (sent by the committing transaction) and on
SQLite on a datagram the committing process sends after its commit (core/outbox.py
`wake_relay`), and otherwise polls, in case a wake-up was missed: every second on PostgreSQL,
every `relay_poll_seconds` on SQLite. SQLite's poll is a read on a read-only connection of its
own (is any row unsent?): only when one is does the relay open a write transaction to claim
it, so an idle relay never takes the one write lock the API's creates need.
Workers also call `drain` right after their own commits, so a launch does not wait for the
relay's next round. The relay logs the ids of the rows it published (INFO), so an operator
can tell its deliveries from the workers' own.

`--heartbeat-file PATH` touches PATH every few seconds while the loop turns, for a liveness
probe (k8s/relay.yaml): the relay serves no HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import select
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from celery import Celery
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core import db, heap, outbox, process_logging
from core.process_logging import lifecycle
from core.settings import Settings, get_settings
from workers.celery_app import app

BATCH = 200
LEASE_SECONDS = 30.0  # a relay that dies mid-publish delays its claimed rows this long
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
WAKE_BATCH = 256  # wake-ups one round consumes at most (their socket queues a few hundred)
HEARTBEAT_SECONDS = 5.0  # how often `--heartbeat-file` is touched; probes allow far more
Publish = Callable[[str, dict[str, Any]], None]
log = logging.getLogger("trainport.relay")


class BrokerUnavailable(Exception):
    """Publishing failed; the rows went back unsent."""


def celery_publisher(app: Celery) -> Publish:
    def publish(task: str, payload: dict[str, Any]) -> None:
        app.send_task(task, kwargs=payload, retry=True)

    return publish


def drain(factory: sessionmaker[Session], publish: Publish, batch: int = BATCH) -> int:
    """Publish every unsent row there is now; how many were sent. Raises BrokerUnavailable."""
    return len(drain_ids(factory, publish, batch))


def drain_ids(factory: sessionmaker[Session], publish: Publish, batch: int = BATCH) -> list[int]:
    """`drain`, returning the ids of the rows sent (oldest first)."""
    total: list[int] = []
    while True:
        # A read first: most drains (every settle's pass, every wake-up) find nothing, and a
        # claim is a write transaction, which on SQLite waits behind every other writer.
        with db.session_scope(db.read_sessions(factory)) as session:
            if not outbox.anything_to_claim(session):
                return total
        with db.session_scope(factory) as session:
            claimed = outbox.claim(session, batch, LEASE_SECONDS)
        sent = _publish_all(claimed, publish)
        with db.session_scope(factory) as session:
            outbox.mark_sent(session, sent)
            outbox.release(session, [m.id for m in claimed if m.id not in set(sent)])
        total += sent
        if len(sent) < len(claimed):
            raise BrokerUnavailable(f"published {len(sent)} of {len(claimed)} outbox rows")
        if len(claimed) < batch:
            return total


def _publish_all(claimed: list[outbox.Claimed], publish: Publish) -> list[int]:
    sent: list[int] = []
    for message in claimed:
        try:
            publish(message.task, message.payload)
        except Exception as exc:  # the broker's errors vary by transport; all mean "later"
            log.warning("broker refused %s (%s); will retry", message.task, exc)
            break
        sent.append(message.id)
    return sent


def id_ranges(ids: list[int]) -> str:
    """Sorted ids as compact ranges, for the log: [7, 8, 9, 11] -> "7-9, 11"."""
    spans: list[list[int]] = []
    for row_id in sorted(ids):
        if spans and row_id == spans[-1][1] + 1:
            spans[-1][1] = row_id
        else:
            spans.append([row_id, row_id])
    return ", ".join(f"{low}-{high}" if high > low else f"{low}" for low, high in spans)


# Uses the partial index ix_outbox_unsent; a lapsed claim is unsent too, so it is re-claimed.
UNSENT = "SELECT 1 FROM outbox WHERE sent_at IS NULL LIMIT 1"


class Relay:
    """The relay loop; `stop()` ends it from another thread or a signal handler.

    With a `heartbeat` file, the loop touches it at least every HEARTBEAT_SECONDS while it turns
    (backing off from an unreachable database or broker included): a liveness probe restarts a
    relay whose file has gone stale, i.e. one that is stuck, not one that waits for a service.
    """

    def __init__(self, settings: Settings, publish: Publish, heartbeat: Path | None = None) -> None:
        self.settings = settings
        self.publish = publish
        self.heartbeat = heartbeat
        self.engine = db.build_engine(settings)
        self.factory = db.make_sessionmaker(self.engine)
        self._stop = threading.Event()
        self._last_beat = float("-inf")  # the first round beats at once

    def stop(self) -> None:
        self._stop.set()
        if self.settings.is_sqlite:  # out of its wait now, not at its next poll
            outbox.wake_relay(str(make_url(self.settings.database_url).database))

    def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._beat()
            try:
                with self._wakeups() as wait:
                    while not self._stop.is_set():
                        self._publish_round()
                        failures = 0
                        wait()
                        self._beat()
            except Exception as exc:  # the database or the broker is away: back off, go on
                log.warning("relay round failed: %s", exc)
                self._stop.wait(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1
        self.engine.dispose()

    def _publish_round(self) -> None:
        sent = drain_ids(self.factory, self.publish)
        if sent:  # which rows the relay (not a worker's own drain) delivered, for operators
            log.info("published %d outbox row(s): %s", len(sent), id_ranges(sent))

    def _beat(self) -> None:
        now = time.monotonic()
        if self.heartbeat is None or now - self._last_beat < HEARTBEAT_SECONDS:
            return
        self.heartbeat.touch()
        self._last_beat = now

    @contextmanager
    def _wakeups(self) -> Iterator[Callable[[], None]]:
        if self.settings.is_sqlite:
            database = str(make_url(self.settings.database_url).database)
            uri = f"file:{database}?mode=ro"
            with (
                contextlib.closing(sqlite3.connect(uri, uri=True)) as reader,
                _wake_socket(database) as wakes,
            ):

                def pause() -> None:
                    while not self._stop.is_set():
                        _wait_for_wake(wakes, self.settings.relay_poll_seconds)
                        self._beat()
                        if reader.execute(UNSENT).fetchone() is not None:
                            return

                yield pause
            return
        url = make_url(self.settings.database_url).set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f"LISTEN {outbox.CHANNEL}")

            def wait() -> None:
                for _ in conn.notifies(timeout=1.0, stop_after=1):
                    pass

            yield wait


@contextmanager
def _wake_socket(database: str) -> Iterator[socket.socket | None]:
    """The socket a commit that wrote outbox rows wakes (core/outbox.py `wake_relay`); None when
    another relay of the same file holds it: this one then finds rows by its poll alone."""
    wakes = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        wakes.bind(outbox.wake_address(database))
    except OSError as exc:
        wakes.close()
        log.info("relay wake-ups are another relay's (%s); polling every round", exc)
        yield None
        return
    with wakes:
        yield wakes


def _wait_for_wake(wakes: socket.socket | None, poll_seconds: float) -> None:
    """Until a wake-up arrives or `poll_seconds` pass; then the wake-ups queued are consumed
    (up to WAKE_BATCH: a process that sends without end, e.g. a rank on a shared network, can
    make the relay look more often, never stop it looking), so one round answers them all."""
    if wakes is None:
        time.sleep(poll_seconds)
        return
    ready, _, _ = select.select([wakes], [], [], poll_seconds)
    for _ in range(WAKE_BATCH):
        if not ready:
            return
        wakes.recv(16)
        ready, _, _ = select.select([wakes], [], [], 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.relay", description=__doc__)
    parser.add_argument(
        "--heartbeat-file",
        type=Path,
        help="touch this file every few seconds while the loop turns (for a liveness probe)",
    )
    args = parser.parse_args(argv)
    process_logging.configure(get_settings())
    relay = Relay(get_settings(), celery_publisher(app), heartbeat=args.heartbeat_file)
    heap.start_up(get_settings().gc_young_threshold)
    signal.signal(signal.SIGTERM, lambda *_: relay.stop())
    signal.signal(signal.SIGINT, lambda *_: relay.stop())
    lifecycle.info("outbox relay started")
    relay.run()


if __name__ == "__main__":
    main()

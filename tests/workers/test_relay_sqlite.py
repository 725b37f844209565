"""The embedded relay polls with reads: idle, it takes no write lock from the API (issue 17)."""

from __future__ import annotations

import socket
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


class RelayThread:
    """A relay on `url`'s file in a thread of its own, recording what it publishes."""

    def __init__(self, url: str, poll_seconds: float) -> None:
        self.published: list[dict[str, Any]] = []
        self.loop = relay.Relay(
            Settings(database_url=url, relay_poll_seconds=poll_seconds),
            lambda _task, payload: self.published.append(payload),
        )
        self.begins: list[float] = []
        event.listen(self.loop.engine, "begin", lambda _conn: self.begins.append(time.monotonic()))
        self.thread = threading.Thread(target=self.loop.run, daemon=True)

    def __enter__(self) -> RelayThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.begins and time.monotonic() < deadline:  # bounded: its first round
            time.sleep(0.01)
        time.sleep(0.2)  # the first round is done: the relay waits
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.stop()
        self.thread.join(timeout=10)

    def wait_published(self, count: int, timeout: float) -> float:
        started = time.monotonic()
        while len(self.published) < count and time.monotonic() < started + timeout:  # bounded
            time.sleep(0.005)
        return time.monotonic() - started


def enqueue(url: str, number: int) -> None:
    engine = db.build_engine(Settings(database_url=url))
    try:
        with session_scope(db.make_sessionmaker(engine)) as session:
            outbox.enqueue(session, outbox.Task.SCHEDULE, number=number)
    finally:
        engine.dispose()


def test_a_commit_that_writes_outbox_rows_wakes_the_relay_before_its_poll(tmp_path: Path) -> None:
    """Before, a created run's schedule task waited for the relay's next poll (up to 25 ms, 26 ms
    median from the 201 to the publish in bench/e2e_bench.py): now the commit wakes it."""
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    migrate.upgrade(url)
    with RelayThread(url, poll_seconds=60) as relay_thread:  # a poll would come far too late
        for number in (1, 2, 3):
            enqueue(url, number)
            waited = relay_thread.wait_published(number, timeout=10)
            assert waited < 5, f"row {number} waited {waited:.1f}s: the relay was not woken"
    assert [payload["number"] for payload in relay_thread.published] == [1, 2, 3]


def test_stopping_a_relay_ends_its_wait_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    migrate.upgrade(url)
    relay_thread = RelayThread(url, poll_seconds=60)
    with relay_thread:
        pass
    assert not relay_thread.thread.is_alive()  # __exit__ joins for 10 s; its poll is 60 s


def test_a_relay_whose_wake_up_another_holds_still_publishes_by_polling(tmp_path: Path) -> None:
    """Two relays of one file (two embedded worker processes): one gets the wake-ups, the other
    polls; an address someone else squats on is the same case."""
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    migrate.upgrade(url)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as squatter:
        squatter.bind(outbox.wake_address(str(tmp_path / "relay.db")))
        with RelayThread(url, poll_seconds=0.05) as relay_thread:
            enqueue(url, 7)
            relay_thread.wait_published(1, timeout=10)
    assert [payload["number"] for payload in relay_thread.published] == [7]


def test_the_wake_up_address_is_the_files_whatever_path_names_it(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    assert outbox.wake_address(str(tmp_path / "link" / "x.db")) == outbox.wake_address(
        str(tmp_path / "data" / "x.db")
    )
    assert outbox.wake_address(str(tmp_path / "data" / "x.db")) != outbox.wake_address(
        str(tmp_path / "data" / "y.db")
    )

"""The embedded broker (a SQLite file, workers/brokers.py) stays as small as its queue.

kombu's SQLAlchemy transport kept every delivered message, marked invisible, and each poll walked
them all: 40 polls a second, ~120,000 beat messages a day, an idle platform on a full core
within a day. These tests drive the app's own transport through kombu's API, on a real file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection

from core.settings import Settings
from workers.celery_app import create_celery

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")  # kombu's


@contextmanager
def broker(state: Path) -> Iterator[Connection]:
    app = create_celery(Settings(broker_url="", state_dir=state))
    with app.connection_for_write() as connection:
        yield connection


def rows(state: Path, where: str = "1") -> int:
    with closing(sqlite3.connect(state / "broker.db")) as db:
        return int(db.execute(f"SELECT count(*) FROM kombu_message WHERE {where}").fetchone()[0])


def test_a_message_handed_out_leaves_no_row_and_order_is_kept(tmp_path: Path) -> None:
    with broker(tmp_path) as connection:
        queue = connection.SimpleQueue("runs")
        for index in range(5):
            queue.put({"n": index})
        assert rows(tmp_path) == 5
        taken = [queue.get(timeout=5) for _ in range(5)]
        for message in taken:
            message.ack()
        with pytest.raises(Empty):
            queue.get(block=False)
        queue.close()
    assert [m.payload["n"] for m in taken] == [0, 1, 2, 3, 4]
    assert rows(tmp_path) == 0  # kombu's transport kept all five, invisible


def test_the_rows_an_older_version_left_are_deleted_on_first_use(tmp_path: Path) -> None:
    with broker(tmp_path) as connection:
        queue = connection.SimpleQueue("runs")
        queue.put({"n": 1})
        queue.close()
    with closing(sqlite3.connect(tmp_path / "broker.db")) as db:  # what kombu's left behind
        queue_id = db.execute("SELECT id FROM kombu_queue WHERE name = 'runs'").fetchone()[0]
        db.executemany(
            "INSERT INTO kombu_message (queue_id, visible, timestamp, payload, version) "
            "VALUES (?, 0, datetime('now'), '{}', 1)",
            [(queue_id,)] * 1000,
        )
        db.commit()
    with broker(tmp_path) as connection:
        queue = connection.SimpleQueue("runs")
        message = queue.get(timeout=5)
        message.ack()  # (unacknowledged, closing the channel would put it back)
        queue.close()
    assert message.payload == {"n": 1}  # the waiting message still arrives
    assert rows(tmp_path) == 0


def test_a_poll_that_finds_nothing_does_not_wait_for_the_writer(tmp_path: Path) -> None:
    """kombu's poll began with BEGIN IMMEDIATE: behind another writer it waited out SQLite's
    busy timeout, then failed 'database is locked'."""
    with broker(tmp_path) as connection:
        queue = connection.SimpleQueue("runs")
        with pytest.raises(Empty):
            queue.get(block=False)  # the queue and its tables exist
        with closing(sqlite3.connect(tmp_path / "broker.db", isolation_level=None)) as writer:
            writer.execute("BEGIN IMMEDIATE")  # someone holds the write lock
            try:
                with pytest.raises(Empty):
                    queue.get(block=False)
            finally:
                writer.execute("ROLLBACK")
        queue.close()
    assert rows(tmp_path, "visible") == 0

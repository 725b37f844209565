"""The embedded broker's poll as its file ages: kombu's SQLAlchemy transport against ours.

kombu's keeps every delivered message, marked invisible, and its poll walks them; ours
(workers/brokers.py) deletes a message when it hands it out. For each transport, on a fresh
SQLite file: `--messages` real messages put, taken and acknowledged through kombu's API, the
rows they leave, and the mean wall time of an empty poll (what a worker does 40 times a second
when idle); then, as an older file would be, `--aged` delivered rows more, written directly,
and the empty poll again. Prints, never asserts.

    python -m bench.broker_poll_bench                      # ~30 s
    python -m bench.broker_poll_bench --messages 20000 --aged 120000
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from contextlib import closing, suppress
from pathlib import Path
from queue import Empty
from typing import Any

from kombu import Connection
from kombu.transport import sqlalchemy as sqla_transport

from workers.brokers import EmbeddedTransport

POLLS = 200


def empty_poll_ms(queue: Any) -> float:
    started = time.perf_counter()
    for _ in range(POLLS):
        with suppress(Empty):
            queue.get(block=False)
    return round((time.perf_counter() - started) * 1000 / POLLS, 3)


def age(database: Path, rows: int) -> None:
    with closing(sqlite3.connect(database)) as db:
        queue_id = db.execute("SELECT id FROM kombu_queue WHERE name = 'bench'").fetchone()[0]
        db.executemany(
            "INSERT INTO kombu_message (queue_id, visible, timestamp, payload, version) "
            "VALUES (?, 0, datetime('now'), '{}', 1)",
            [(queue_id,)] * rows,
        )
        db.commit()


def measure(transport: type, messages: int, aged: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    database = folder / "broker.db"
    with Connection(f"sqlite:///{database}", transport=transport) as connection:
        queue = connection.SimpleQueue("bench")
        fresh = empty_poll_ms(queue)
        started = time.perf_counter()
        for index in range(messages):
            queue.put({"n": index})
            queue.get(timeout=5).ack()
        per_message = (time.perf_counter() - started) * 1000 / max(messages, 1)
        with closing(sqlite3.connect(database)) as db:
            left = db.execute("SELECT count(*) FROM kombu_message").fetchone()[0]
        after = empty_poll_ms(queue)
        age(database, aged)
        older = empty_poll_ms(queue)
        queue.close()
    return {
        "empty poll ms, fresh file": fresh,
        "put + get + ack ms a message": round(per_message, 3),
        f"rows left after {messages} messages": left,
        "empty poll ms, after them": after,
        f"empty poll ms, {aged} delivered rows more": older,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--aged", type=int, default=60000)
    args = parser.parse_args()
    report = {
        "kombu's SQLAlchemy transport": measure(sqla_transport.Transport, args.messages, args.aged),
        "workers.brokers.EmbeddedTransport": measure(EmbeddedTransport, args.messages, args.aged),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

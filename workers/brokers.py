"""The broker transports the Celery app uses: kombu's, with what running for weeks needs.

`EmbeddedTransport` (no `TRAINPORT_BROKER_URL`): kombu's SQLAlchemy transport on a SQLite file,
whose channel deletes a message when it hands it out. kombu's keeps every delivered message
forever, marked invisible, and each poll (40 a second) walked them all: an empty poll cost
1.1 ms with none, 4.5 ms with 20,000 and 12 ms with 60,000, and beat alone sends ~120,000 a
day, so an idle platform burned a core within a day. A poll that finds nothing takes no write
lock either. A message is gone once fetched, as before: one a killed worker held is lost, and
the reconciler re-drives what it was doing.

`RedisTransport` (`redis://`, `rediss://`): kombu's, for which a connection that is gone is a
connection error (`RedisChannel`).
"""

from __future__ import annotations

from queue import Empty
from typing import Any

import redis
from kombu.transport import redis as redis_transport
from kombu.transport import sqlalchemy as sqla_transport
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from sqlalchemy import Engine, delete, select

EMBEDDED_POLL_SECONDS = 0.025  # how often a worker polls the serverless broker


class EmbeddedChannel(sqla_transport.Channel):
    """kombu's SQLAlchemy channel, taking a message by deleting it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # kombu's is untyped
        self._queue_ids: dict[str, int] = {}

    def _engine(self) -> Engine:
        engine: Engine = self._open()[0]  # type: ignore[no-untyped-call]
        return engine

    def _queue_id(self, queue: str) -> int:
        """The queue's row id (rows are never renumbered), and on first use the invisible
        messages an older version left behind deleted."""
        if queue not in self._queue_ids:
            queue_id = int(self._get_or_create(queue).id)  # type: ignore[no-untyped-call]
            self.session.commit()  # no read transaction left open: it would block writers
            table = self.message_cls.__table__
            with self._engine().begin() as conn:
                conn.execute(delete(table).where(table.c.queue_id == queue_id, ~table.c.visible))
            self._queue_ids[queue] = queue_id
        return self._queue_ids[queue]

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        table = self.message_cls.__table__
        oldest = (
            select(table.c.id)
            .where(table.c.queue_id == self._queue_id(queue), table.c.visible)
            .order_by(table.c.timestamp, table.c.id)
            .limit(1)
        )
        with self._engine().connect() as conn:
            found = conn.execute(oldest).scalar()  # a read: no write lock when there is none
            if found is None:
                raise Empty()
            taken = delete(table).where(table.c.id == found).returning(table.c.payload)
            payload = conn.execute(taken).scalar()  # None: another consumer took it first
            conn.commit()
        if payload is None:
            raise Empty()
        return loads(bytes_to_str(payload))  # type: ignore[no-untyped-call]


class EmbeddedTransport(sqla_transport.Transport):
    """The embedded broker's transport, polling often enough that a run starts promptly.

    The interval is a class attribute because the transport hands its options, unfiltered, to
    `create_engine`, which rejects `polling_interval`.
    """

    Channel = EmbeddedChannel
    polling_interval = EMBEDDED_POLL_SECONDS


class RedisChannel(redis_transport.Channel):
    """kombu's Redis channel, for which a connection that is gone is a connection error.

    When Redis goes away while a task is in flight (delivered, not yet acknowledged) and the
    consumer waits in BRPOP, kombu's first close of the channel stops half-way on the broken
    socket and its connection is collected anyway. The channel's later calls (closing it again,
    restoring its unacknowledged messages, the finished task's ack) then find no connection
    and raised AttributeError, which Celery 5.7 takes for an unrecoverable error: the worker
    stopped consuming for good (CI, stop 25; tests/workers/test_failures.py). As a connection
    error each is what every caller already tolerates, and nothing is lost: the broker is
    unreachable, so those messages stay in its `unacked` hash until the visibility timeout,
    and every task is idempotent (core/outbox.py).
    """

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection of this channel was closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        return params


class RedisTransport(redis_transport.Transport):
    Channel = RedisChannel

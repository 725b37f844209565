"""The change listener: a NOTIFY reaches the waiters at once, not at the end of a poll."""

from __future__ import annotations

import asyncio
import time

import psycopg
from sqlalchemy.engine import make_url

from core.notify import CHANNEL, ChangeHub, PostgresListener

POLL_S = 30.0  # the listener's wait; a notification must not wait for it to end
WITHIN_S = 15.0


def test_a_notification_wakes_its_waiter_before_the_listeners_poll_ends(
    postgres_url: str,
) -> None:
    hub = ChangeHub()
    listener = PostgresListener(postgres_url, hub, poll=POLL_S)
    listener.start()
    assert listener.ready.wait(10)
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)

    async def notified_after() -> float:
        flag = hub.subscribe("run_waited_for")
        started = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_notify(%s, 'run_other'), pg_notify(%s, 'run_waited_for')",
                [CHANNEL, CHANNEL],
            )
        await asyncio.wait_for(flag.wait(), timeout=WITHIN_S)
        return time.monotonic() - started

    try:
        assert asyncio.run(notified_after()) < WITHIN_S
    finally:
        listener.stop()

"""A bounded warm shutdown: after SIGTERM, tasks still running are requeued, not waited for.

Celery's warm shutdown waits for every running task however long it takes; a supervisor then
SIGKILLs the worker, and Redis keeps the messages it held unacknowledged for the whole
visibility timeout (an hour) before any other worker may have them. Instead, once
`worker_shutdown_grace_seconds` have passed, every task still running is rejected with
requeue, so its message goes back to the head of its queue for another worker, and the worker
process exits at once, as a crashed one would (its embedded beat with it). That is safe because
every task is idempotent: a launch abandoned half-way is adopted by its next delivery, and a
task that keeps losing its worker is bounded by `max_task_deliveries`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from billiard.process import active_children
from celery import signals
from celery.worker import state

EXIT_CODE = 1  # what Celery's own cold shutdown exits with
POLL_SECONDS = 0.05
# kombu's Redis BRPOP waits at most a second: a message pushed back later than this after the
# worker stopped consuming cannot be handed to a BRPOP it left waiting (and lost with it).
BROKER_QUIET_SECONDS = 2.0
log = logging.getLogger("trainport.shutdown")
_started = threading.Event()


def bound_warm_shutdown(grace_seconds: float) -> None:
    """From now on, a warm shutdown lasts at most `grace_seconds` (call it once per worker)."""

    def on_shutting_down(how: str = "", **_: Any) -> None:
        if how == "Warm" and not _started.is_set():  # a second SIGTERM changes nothing
            _started.set()
            watchdog = threading.Thread(
                target=_requeue_when_overdue, args=(grace_seconds,), name="shutdown", daemon=True
            )
            watchdog.start()

    signals.worker_shutting_down.connect(on_shutting_down, weak=False)


def _unfinished() -> list[Any]:
    """Requests this worker holds and has not acknowledged: running, or waiting for a thread."""
    return [request for request in list(state.reserved_requests) if not request.acknowledged]


def _requeue_when_overdue(grace_seconds: float) -> None:
    started = time.monotonic()
    while _unfinished() and time.monotonic() < started + grace_seconds:
        time.sleep(POLL_SECONDS)  # bounded poll: Celery has no event for "the last task ended"
    if not _unfinished():
        return  # the warm shutdown ends by itself
    time.sleep(max(0.0, started + BROKER_QUIET_SECONDS - time.monotonic()))
    for request in _unfinished():
        log.warning("requeueing %s[%s]: unfinished at shutdown", request.name, request.id)
        # On the message itself: Celery's own reject waits for the event loop, which is stuck
        # in the shutdown that waits for this very task.
        request.message.reject(requeue=True)
    for child in active_children():  # the embedded beat would outlive an abrupt exit
        child.terminate()
    logging.shutdown()
    os._exit(EXIT_CODE)

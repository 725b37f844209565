"""A bounded warm shutdown (after SIGTERM, tasks still running are requeued, not waited for),
and hard time limits under the threads pool.

Celery's warm shutdown waits for every running task however long it takes; a supervisor then
SIGKILLs the worker, and Redis keeps the messages it held unacknowledged for the whole
visibility timeout (an hour) before any other worker may have them. Instead, once
`worker_shutdown_grace_seconds` have passed, every task still running is rejected with
requeue, so its message goes back to the head of its queue for another worker, and the worker
process exits at once, as a crashed one would (its embedded beat with it). That is safe because
every task is idempotent: a launch abandoned half-way is adopted by its next delivery, and a
task that keeps losing its worker is bounded by `max_task_deliveries`.

The threads pool cannot stop a task, so Celery's hard time limits do nothing there. With a
broker that redelivers (Redis, after its visibility timeout), `enforce_hard_time_limits` does
what the prefork pool does to a task past its limit: the task fails (its message is
acknowledged, so it is never handed to a second worker while its thread may still run) and the
thread it holds is given up: the worker shuts down as above (the other tasks get their grace,
then are requeued) and exits non-zero, for its supervisor to start a fresh one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from billiard.process import active_children
from celery import signals
from celery.concurrency.thread import TaskPool as ThreadsPool
from celery.worker import state

EXIT_CODE = 1  # what Celery's own cold shutdown exits with
POLL_SECONDS = 0.05
# kombu's Redis BRPOP waits at most a second: a message pushed back later than this after the
# worker stopped consuming cannot be handed to a BRPOP it left waiting (and lost with it).
BROKER_QUIET_SECONDS = 2.0
LIMIT_POLL_SECONDS = 1.0  # how late past its limit a task under the threads pool is failed
log = logging.getLogger("trainport.shutdown")
_started = threading.Event()
_abandoned = threading.Event()  # a task past its time limit still holds one of our threads


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
    if not _unfinished() and not _abandoned.is_set():
        return  # the warm shutdown ends by itself (it would wait forever for an abandoned task)
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


def enforce_hard_time_limits(default_seconds: float) -> None:
    """Under the threads pool, a task past its hard time limit (its own, else `default_seconds`)
    fails and the worker restarts (call it once per worker, beside `bound_warm_shutdown`)."""

    def on_ready(sender: Any = None, **_: Any) -> None:
        if isinstance(getattr(sender, "pool", None), ThreadsPool):
            watchdog = threading.Thread(
                target=_fail_overdue_tasks, args=(default_seconds,), name="time-limits", daemon=True
            )
            watchdog.start()

    signals.worker_ready.connect(on_ready, weak=False)


def _past_limit(request: Any, default_seconds: float) -> bool:
    limit = request.time_limits[0] or request.task.time_limit or default_seconds
    return request.time_start is not None and time.time() - request.time_start > limit


def _fail_overdue_tasks(default_seconds: float) -> None:
    while not _started.is_set():  # bounded poll: no event for "a task ran too long"
        time.sleep(LIMIT_POLL_SECONDS)
        overdue = [r for r in list(state.active_requests) if _past_limit(r, default_seconds)]
        if overdue:
            for request in overdue:
                log.error(
                    "%s[%s] ran past its hard time limit: failed, and the worker restarts",
                    request.name, request.id,
                )  # fmt: skip
                # On the message itself, now: Celery's own ack waits for the event loop, which
                # the shutdown below may leave before it runs.
                request.message.ack()
                request.acknowledged = True
            _abandoned.set()
            os.kill(os.getpid(), signal.SIGTERM)  # the bounded warm shutdown above
            return

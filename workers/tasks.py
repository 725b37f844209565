"""The Celery tasks. Each takes ids, reloads what it needs and returns early if the row moved on.

Tasks are thin: the rules are in core (admission, attempts) and in workers/scheduler.py and
workers/reconciler.py. Each process builds its engine and executors lazily, after any fork.
After a commit that wrote outbox rows (launch tasks of admitted runs) a task publishes them
itself instead of waiting for the relay's next round (with the embedded broker it runs the
launches itself). A rank's shim that exits triggers a reconciler pass at once (the local
executor tells us), so a finished run frees its slot without waiting for beat.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from core import db, outbox, process_logging, telemetry
from core.models import utcnow
from core.outbox import Task
from core.scheduling import repository
from core.secrets.service import legacy_worker_variables
from core.settings import Settings, get_settings
from core.webhooks import delivery as webhook_delivery
from workers import relay, scheduler, webhooks
from workers.celery_app import app
from workers.executors.base import Executor
from workers.executors.local import LocalExecutor
from workers.executors.registry import Where, executor_for
from workers.reconciler import WorkerContext, launch_attempt, reconcile_once, stop_run

SHORT_LIMIT = 60  # seconds; schedule, stop, reconcile and prune are quick
# A reconcile call stops starting runs' steps after this, far inside SHORT_LIMIT: a catch-up
# pass (thousands of runs seen running at once, a transaction each) goes on in the next call.
RECONCILE_BUDGET_SECONDS = 20.0
LAUNCH_LIMIT = 120  # seconds; starting processes or creating pods
OUTBOX_KEEP = timedelta(days=1)
F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("trainport.tasks")
_context_lock = threading.Lock()
_contexts: dict[int, WorkerContext] = {}
_reconciling = threading.Lock()
_reconcile_wanted = threading.Event()
_passes = scheduler.PassQueue()  # this process's admission passes, one at a time


def context() -> WorkerContext:
    """This process's database sessions, settings and executors (built once per process)."""
    with _context_lock:
        pid = os.getpid()
        if pid not in _contexts:
            settings = get_settings()
            factory = db.make_sessionmaker(db.build_engine(settings))
            _contexts[pid] = WorkerContext(factory, settings, _executors(settings))
            _warn_about_legacy_secrets()
        return _contexts[pid]


def _warn_about_legacy_secrets() -> None:
    names = legacy_worker_variables(dict(os.environ))
    if names:
        log.warning(
            "%s: worker secret variables are no longer read; create each org's secrets through "
            "the API (`trainport secrets set NAME`) and remove them from the workers",
            ", ".join(names),
        )


def _executors(settings: Settings) -> Callable[[Where], Executor]:
    def by_cluster(where: Where) -> Executor:
        executor = executor_for(where, settings)
        if isinstance(executor, LocalExecutor) and executor.on_shim_exit is None:
            executor.on_shim_exit = reconcile  # a rank ended: settle it and admit the next run
        return executor

    return by_cluster


def _task(name: Task, limit: int = SHORT_LIMIT) -> Callable[[F], F]:
    """Register a task under its outbox name, with its time limits (Celery is untyped)."""
    register: Callable[[F], F] = app.task(
        name=name.value, time_limit=limit, soft_time_limit=limit - 10
    )
    return register


def _publish_now(factory: sessionmaker[Session]) -> None:
    try:
        relay.drain(factory, publisher(context().settings))
    except relay.BrokerUnavailable as exc:  # the relay publishes them once it can
        log.warning("left outbox rows for the relay: %s", exc)


def publisher(settings: Settings, send: relay.Publish | None = None) -> relay.Publish:
    """The broker. On the embedded broker, which workers poll, an admission pass or a launch is
    run right here instead (the task itself, in this thread; the embedded relay publishes with
    this too): that saves the broker's round trip, and the row is marked sent only once the task
    returned, so a worker that dies meanwhile leaves it to the relay. A task that raises goes
    to the broker after all, where Celery's limits and logging apply (tasks are idempotent).
    `send` is the broker's publish (this app's by default).

    With a broker every task goes to it: a launch redelivered by the broker after its worker
    died is the launch itself, at once (tests/workers/test_overdue_tasks.py), where one run
    inside the task that admitted it would wait for its outbox row's lease to lapse."""
    to_broker = send or relay.celery_publisher(app)
    if settings.broker_url:
        return to_broker
    inline: dict[str, Callable[..., object]] = {
        Task.SCHEDULE.value: schedule,
        Task.LAUNCH.value: launch,
    }

    def publish(task: str, payload: dict[str, Any]) -> None:
        if task not in inline:
            to_broker(task, payload)
            return
        try:
            inline[task](**payload)
        except Exception:
            log.exception("%s failed in the publishing thread; handing it to the broker", task)
            to_broker(task, payload)

    return publish


@_task(Task.SCHEDULE)
def schedule(run_id: str | None = None) -> int:
    """Accept the run (every pending run when none is named) and run an admission pass; or, if
    a pass is running in this process, leave the run to its next round (scheduler.PassQueue)."""
    ctx = context()
    with process_logging.run_context(run_id), telemetry.timed(telemetry.ADMISSION_PASS):
        result = _passes.run(ctx.factory, ctx.settings, run_id)
    if result.admitted:
        _publish_now(ctx.factory)
    return len(result.admitted)


@_task(Task.LAUNCH, LAUNCH_LIMIT)
def launch(run_id: str, attempt: int) -> str:
    with process_logging.run_context(run_id, attempt):
        try:
            outcome = launch_attempt(context(), run_id, attempt)
        except Exception:
            telemetry.LAUNCHES.labels("error").inc()
            raise
        telemetry.LAUNCHES.labels(outcome.replace(" ", "_")).inc()
        return outcome


@_task(Task.STOP)
def stop(run_id: str, attempt: int | None = None) -> bool:
    """Stop a cancelled run; if its grace period is still running, the reconciler finishes it."""
    with process_logging.run_context(run_id, attempt):
        return stop_run(context(), run_id)


@_task(Task.RECONCILE)
def reconcile() -> int:
    """A reconciler pass; then, if attempts ended, an admission pass for what they freed.

    Beat asks every `reconcile_interval_seconds`, and the local executor as soon as a rank's
    shim exits. Passes never overlap in one process: asked while one runs, that one runs once
    more when it is done (so what changed meanwhile is seen), and this call returns at once.
    """
    _reconcile_wanted.set()
    settled = 0
    deadline = time.monotonic() + RECONCILE_BUDGET_SECONDS
    while _reconcile_wanted.is_set() and _reconciling.acquire(blocking=False):
        try:
            _reconcile_wanted.clear()
            settled += _reconcile_pass(context(), deadline)
        finally:
            _reconciling.release()
        if time.monotonic() > deadline:
            break  # a wish left standing is the next call's (beat's next tick, or a shim's)
    return settled


def _reconcile_pass(ctx: WorkerContext, deadline: float) -> int:
    try:
        with telemetry.timed(telemetry.RECONCILE_PASS):
            summary = reconcile_once(ctx, deadline)
    except Exception:
        telemetry.RECONCILE_FAILURES.inc()
        raise
    telemetry.RECONCILE_LAST_SUCCESS.set_to_current_time()
    if summary.settled and _anything_waiting(ctx):
        schedule()
    _publish_now(ctx.factory)  # launches the pass re-drove
    return summary.settled


def _anything_waiting(ctx: WorkerContext) -> bool:
    """Whether what an ended attempt freed can go to anyone: a whole admission pass (three
    write transactions) after every settle was a quarter of the embedded workers' CPU when
    runs came one at a time and nothing waited (issue 17). Beat's pass still comes every few
    seconds (budget alerts ride on it); a run created after this look brings its own."""
    with db.session_scope(db.read_sessions(ctx.factory)) as session:
        return repository.any_waiting(session)


@_task(Task.PRUNE)
def prune_outbox() -> int:
    """Forget outbox rows sent a day ago, and webhook deliveries past their log's retention."""
    ctx = context()
    kept_days = timedelta(days=ctx.settings.webhook_log_retention_days)
    with db.session_scope(ctx.factory) as session:
        pruned = outbox.prune(session, utcnow() - OUTBOX_KEEP)
        return pruned + webhook_delivery.prune(session, utcnow() - kept_days)


@_task(Task.DELIVER_WEBHOOKS)
def deliver_webhooks() -> int:
    """Send due webhook deliveries: asked by the outbox after an event, and by beat (retries,
    and deliveries a killed worker had leased)."""
    ctx = context()
    return webhooks.deliver_due(ctx.factory, ctx.settings)

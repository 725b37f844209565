"""The one Celery application, for production (Redis) and the embedded mode (no server at all).

`TRAINPORT_BROKER_URL=redis://...` selects Redis. Without it the broker is kombu's SQLAlchemy
transport on a SQLite file in the state directory (`<state_dir>/broker.db`), polled every
25 ms: the same tasks, the same code path, nothing to install or start. (Its channel deletes a
message when it hands it out, so the file stays as small as the queue and a message a killed
worker held is lost; the reconciler re-drives whatever it was doing. The transports, each
with what kombu's lacked: workers/brokers.py.)

The pool: `celery worker` runs `TRAINPORT_WORKER_POOL` (threads by default: one process, whose
`TRAINPORT_WORKER_CONCURRENCY` tasks mostly wait on the database, the broker and clusters;
prefork holds a ~100 MB process per task slot) unless its command line names another.

Delivery: JSON only, no result backend (tasks write their results to the database), late acks
with `task_reject_on_worker_lost` (a task whose worker dies is redelivered, never lost), one
message prefetched at a time. Redis redelivers an unacknowledged message only after its
visibility timeout, so that timeout is longer than any task's hard time limit: a slow task is
never handed to a second worker while it still runs (under the threads pool, which cannot stop
a task, workers/shutdown.py enforces the limit); a worker told to stop (SIGTERM) gives its
running tasks `worker_shutdown_grace_seconds`, then requeues the rest (workers/shutdown.py).
Every beat entry carries `expires`, so a backlog of periodic messages built up while workers
were away is dropped, not replayed.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, signals

from core import heap
from core.outbox import Task
from core.sandbox import SandboxRequired, announce
from core.settings import Settings, get_settings
from core.storage.backends import StoreUnreachableByRuns, check_store_reachable_by_runs
from workers import telemetry  # noqa: F401 - its signal handlers serve the workers' metrics
from workers.shutdown import bound_warm_shutdown, enforce_hard_time_limits

TASK_TIME_LIMIT = 300  # seconds; the longest any task may run before it is killed
VISIBILITY_TIMEOUT = 3600  # seconds; must stay above every task's time limit
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}


def broker_url(settings: Settings) -> str:
    if settings.broker_url:
        return settings.broker_url
    return f"sqlite:///{(settings.state_dir / 'broker.db').resolve()}"


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    def every(task: Task, seconds: float, expires: float | None = None) -> dict[str, Any]:
        return {"task": task.value, "schedule": seconds, "options": {"expires": expires or seconds}}

    return {
        "reconcile": every(Task.RECONCILE, settings.reconcile_interval_seconds),
        "schedule": every(Task.SCHEDULE, 5.0),
        "prune-outbox": every(Task.PRUNE, 3600.0, expires=600.0),
        "deliver-webhooks": every(Task.DELIVER_WEBHOOKS, settings.webhook_sweep_seconds),
    }


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)  # beat's schedule, maybe the broker
    app = Celery("trainport", broker=broker_url(settings))  # tasks: _register_tasks
    if settings.broker_url:
        transport: dict[str, Any] = {"visibility_timeout": VISIBILITY_TIMEOUT}
        scheme = urlsplit(settings.broker_url).scheme
        if scheme in ("redis", "rediss"):
            app.conf.broker_transport = "workers.brokers:RedisTransport"
        if scheme == "rediss":  # which naming the transport no longer implies; verified TLS
            app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    else:
        transport = {}
        app.conf.broker_transport = "workers.brokers:EmbeddedTransport"
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_pool=settings.worker_pool.value,  # `celery worker`'s; the embedded mode: threads
        worker_concurrency=settings.worker_concurrency,
        task_time_limit=TASK_TIME_LIMIT,
        task_soft_time_limit=TASK_TIME_LIMIT - 30,
        task_default_queue=settings.celery_queue,
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker outage
        beat_schedule=beat_schedule(settings),
        beat_schedule_filename=str(settings.state_dir / "celerybeat-schedule"),
        worker_hijack_root_logger=False,
    )
    return app


@signals.celeryd_init.connect  # type: ignore[untyped-decorator]
def _register_tasks(**_: object) -> None:
    """Import the tasks where a worker starts (`celery worker`, the embedded worker), not in
    beat, which sends each by name as the relay does and so stays ~35 MB smaller."""
    import workers.tasks  # noqa: F401 - registers them on `app`


@signals.worker_init.connect  # type: ignore[untyped-decorator]
def _checks_at_start(**_: object) -> None:
    """Say whether local ranks are sandboxed, and refuse to start (SystemExit: Celery's signal
    dispatch swallows Exceptions) with TRAINPORT_SANDBOX=bwrap and no way to sandbox, or with
    Kubernetes clusters and an object store their pods cannot reach."""
    settings = get_settings()
    heap.start_up(settings.gc_young_threshold)  # before a prefork pool forks: stays shared
    heap.enable()  # a worker's Kubernetes mirrors stay out of full collections
    try:
        check_store_reachable_by_runs(settings)
        announce(settings, enforce=True)
    except (SandboxRequired, StoreUnreachableByRuns) as refused:
        raise SystemExit(f"error: {refused}") from None


app = create_celery()

bound_warm_shutdown(get_settings().worker_shutdown_grace_seconds)
if get_settings().broker_url:  # Redis redelivers; the embedded broker never does
    enforce_hard_time_limits(TASK_TIME_LIMIT)

"""Prometheus metrics: what each process counts, and the platform's state read at scrape time.

Two kinds of series, kept apart on purpose:

- Counted by the process that does the work (`prometheus_client` metrics below): requests,
  open streams and long polls, admission and reconcile pass durations, launches. Under a
  prefork Celery worker or several uvicorn workers, set `PROMETHEUS_MULTIPROC_DIR` (an empty
  folder per host, cleared at start): each process then writes its values to files there and
  `registry()` adds them up, so a child's counts survive the child.
- Read from the database when scraped (`PlatformCollector`): runs by org and status, queue
  depth and oldest wait by priority, the outbox backlog and relay lag, GPUs allocated against
  capacity. The database is the one place where these are true across every process, so they
  are computed there rather than kept in any process's memory. Each is one indexed query.

Labels are bounded: org ids (a few hundred at most per installation), statuses, priorities,
clusters, GPU types, reasons; never a run id.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.models import Cluster, OutboxMessage, Run, RunAttempt, WebhookDelivery, WebhookEndpoint

ACTIVE_STATUSES = ("pending", "queued", "starting", "running", "stopping")
PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# -- the API ------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "trainport_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "trainport_http_request_duration_seconds",
    "Time to the end of the response (streams excluded), by route template and method",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
STREAMS_OPEN = Gauge(
    "trainport_event_streams_open",
    "Server-Sent Event streams open",
    multiprocess_mode="livesum",
)
LONG_POLLS_OPEN = Gauge(
    "trainport_long_polls_open",
    "Long polls (GET /v1/runs/{id}?wait=) waiting",
    multiprocess_mode="livesum",
)

# -- the workers --------------------------------------------------------------------------------
ADMISSION_PASS = Histogram(
    "trainport_admission_pass_duration_seconds",
    "Duration of a scheduler admission pass",
    buckets=PASS_BUCKETS,
)
RECONCILE_PASS = Histogram(
    "trainport_reconcile_pass_duration_seconds",
    "Duration of a reconciler pass",
    buckets=PASS_BUCKETS,
)
RECONCILE_FAILURES = Counter(
    "trainport_reconcile_pass_failures",
    "Reconciler passes that raised (the pass is retried on the next beat)",
)
RECONCILE_RUN_ERRORS = Counter(
    "trainport_reconcile_run_errors",
    "One run's step of a reconciler pass failed (the pass went on with the others)",
    ["step"],
)
RECONCILE_LAST_SUCCESS = Gauge(
    "trainport_reconcile_last_success_timestamp_seconds",
    "When a reconciler pass last completed (Unix time)",
    multiprocess_mode="max",
)
LAUNCHES = Counter(
    "trainport_launches",
    "Launch tasks by outcome: launched, moved_on, already_launched, gave_up, refused, error",
    ["outcome"],
)
WEBHOOK_ATTEMPTS = Counter(
    "trainport_webhook_attempts",
    "Webhook delivery attempts, by result: succeeded, http_error (a non-2xx answer or a "
    "redirect) or unreachable (refused address, connection error, timeout)",
    ["result"],
)
WEBHOOK_LATENCY = Histogram(
    "trainport_webhook_attempt_duration_seconds",
    "Time from sending a webhook to its receiver's answer (or the error)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RUNS_FINISHED = Counter(
    "trainport_runs_finished",
    "Runs that reached a terminal status, by status and reason",
    ["status", "reason"],
)


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe the block's duration (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


@contextmanager
def counted_open(gauge: Gauge) -> Iterator[None]:
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


# -- read from the database at scrape time --------------------------------------------------


class PlatformCollector(Collector):
    """Gauges computed from the database on each scrape, in one short read-only transaction."""

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self._sessions = sessions

    def describe(self) -> list[Any]:
        return []  # read on collect only: registering must not touch the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = datetime.now(UTC)
        with self._sessions() as session:
            # One pass over the partial index of active runs (ix_runs_active, index only).
            active = session.execute(
                select(Run.status, Run.priority, Run.org_id, func.count(), func.min(Run.queued_at))
                .where(Run.status.in_(ACTIVE_STATUSES))
                .group_by(Run.status, Run.priority, Run.org_id)
            ).all()
            outbox = session.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.sent_at.is_(None)
                )
            ).one()
            allocated = session.execute(
                select(RunAttempt.cluster, RunAttempt.gpu_type, func.sum(RunAttempt.gpus))
                .where(RunAttempt.ended_at.is_(None), RunAttempt.gpus > 0)
                .group_by(RunAttempt.cluster, RunAttempt.gpu_type)
            ).all()
            clusters = session.execute(select(Cluster.name, Cluster.inventory)).all()
            hooks = session.execute(
                select(WebhookEndpoint.org_id, WebhookEndpoint.enabled, func.count()).group_by(
                    WebhookEndpoint.org_id, WebhookEndpoint.enabled
                )
            ).all()
            due = session.execute(
                select(func.count(), func.min(WebhookDelivery.created_at)).where(
                    WebhookDelivery.status == "pending"
                )
            ).one()
        runs: dict[tuple[str, str], int] = defaultdict(int)
        depth: dict[str, int] = defaultdict(int)
        oldest: dict[str, float] = defaultdict(float)
        for status, priority, org, count, first_queued in active:
            runs[(org, status)] += count
            if status == "queued":
                depth[priority] += count
                oldest[priority] = max(oldest[priority], _age(now, first_queued))
        yield _family(
            "trainport_runs",
            "Runs not yet finished, by org and status",
            ["org", "status"],
            list(runs.items()),
        )
        yield _family(
            "trainport_queue_depth",
            "Runs queued for capacity, by priority",
            ["priority"],
            [((priority,), count) for priority, count in depth.items()],
        )
        yield _family(
            "trainport_queue_oldest_wait_seconds",
            "How long the longest-queued run has waited, by priority",
            ["priority"],
            [((priority,), age) for priority, age in oldest.items()],
        )
        yield _family(
            "trainport_outbox_backlog", "Outbox rows not yet published", [], [((), outbox[0])]
        )
        yield _family(
            "trainport_relay_lag_seconds",
            "Age of the oldest unpublished outbox row (0 when none waits)",
            [],
            [((), _age(now, outbox[1]))],
        )
        yield _family(
            "trainport_gpus_allocated",
            "GPUs held by open attempts, by cluster and GPU type",
            ["cluster", "gpu_type"],
            [((cluster, gpu or ""), total) for cluster, gpu, total in allocated],
        )
        capacity = [
            ((name, str(gpu)), int(count))
            for name, inventory in clusters
            for gpu, count in ((inventory or {}).get("gpus") or {}).items()
        ]
        yield _family(
            "trainport_gpus_capacity",
            "GPUs a cluster holds, by cluster and GPU type",
            ["cluster", "gpu_type"],
            capacity,
        )
        yield _family(
            "trainport_webhook_endpoints_disabled",
            "Webhook endpoints disabled after failing for too long, by org",
            ["org"],
            [((org,), count) for org, enabled, count in hooks if not enabled],
        )
        yield _family(
            "trainport_webhook_deliveries_pending",
            "Webhook deliveries not yet delivered (retrying or due)",
            [],
            [((), due[0])],
        )
        yield _family(
            "trainport_webhook_oldest_pending_seconds",
            "Age of the oldest undelivered webhook delivery (0 when none waits)",
            [],
            [((), _age(now, due[1]))],
        )


def _age(now: datetime, since: datetime | None) -> float:
    if since is None:
        return 0.0
    if since.tzinfo is None:  # SQLite hands back naive UTC from an aggregate
        since = since.replace(tzinfo=UTC)
    return max((now - since).total_seconds(), 0.0)


def _family(
    name: str,
    documentation: str,
    labels: list[str],
    samples: Sequence[tuple[tuple[str, ...], Any]],
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), float(value or 0))
    return family


def registry(platform: Engine | None = None) -> CollectorRegistry:
    """What a scrape reads: this process's metrics, or every process's under
    `PROMETHEUS_MULTIPROC_DIR`; and the platform's gauges when given a database to read."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        chosen = CollectorRegistry()
        multiprocess.MultiProcessCollector(chosen)  # type: ignore[no-untyped-call]
    else:
        chosen = CollectorRegistry()
        chosen.register(_ProcessMetrics())
    if platform is not None:
        chosen.register(PlatformCollector(lambda: Session(platform)))
    return chosen


class _ProcessMetrics(Collector):
    """The default registry's metrics (ours and the process's), without registering ours twice."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()

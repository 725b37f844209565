"""Which executor runs a cluster's work, built once per worker process from settings.

A cluster row names its executor kind. Every `local`-kind cluster shares this machine's one
LocalExecutor; each Kubernetes cluster this worker serves (`TRAINPORT_KUBERNETES_CLUSTERS`) has
an executor of its own, with its own API client and settings, built on first use (a worker that
never runs on Kubernetes never loads the client). A cluster this worker does not serve raises
UnknownExecutor: another worker's business.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from core import db
from core.executor_kinds import ExecutorKind
from core.log_archive import LogArchive
from core.logs import LogStore
from core.settings import Settings
from workers.executors.base import Executor
from workers.executors.local import LocalExecutor
from workers.executors.local_sandbox import rank_sandbox

_lock = threading.Lock()
_instances: dict[tuple[str, str, str, str], Executor] = {}
_archives: dict[str, LogArchive] = {}


class UnknownExecutor(LookupError):
    """A cluster names an executor (or a Kubernetes cluster) this worker does not have."""


@dataclass(frozen=True)
class Where:
    """A cluster, by name, and the kind of executor it names."""

    cluster: str
    kind: str


def _build(where: Where, settings: Settings) -> Executor:
    if where.kind == ExecutorKind.LOCAL:
        return LocalExecutor(
            settings.state_dir,
            LogStore(settings.log_root),
            settings.public_url,
            settings.cancel_grace_seconds,
            rank_sandbox(settings),
            log_archive(settings),
        )
    if where.kind == ExecutorKind.KUBERNETES and where.cluster in settings.kubernetes_clusters:
        from workers.executors.kubernetes import executor_from_settings

        cluster = settings.for_kubernetes_cluster(where.cluster)
        return executor_from_settings(cluster, log_archive(settings), where.cluster)
    raise UnknownExecutor(f"no {where.kind} executor for cluster {where.cluster!r} here")


def log_archive(settings: Settings) -> LogArchive:
    """The run logs' database, on an engine the executors share (called under `_lock`): their
    log writers (a thread per process, one per followed pod) never wait for a task's session."""
    if settings.database_url not in _archives:
        factory = db.make_sessionmaker(db.build_engine(settings))
        _archives[settings.database_url] = LogArchive(
            factory, settings.log_max_bytes_per_rank, settings.log_flush_seconds
        )
    return _archives[settings.database_url]


def executor_for(where: Where, settings: Settings) -> Executor:
    """The process-wide executor of the cluster `where` for these settings."""
    cluster = (
        where.cluster if where.kind != ExecutorKind.LOCAL else ""
    )  # one local executor for all
    key = (where.kind, cluster, str(settings.state_dir), str(settings.log_root))
    with _lock:
        if key not in _instances:
            _instances[key] = _build(where, settings)
        return _instances[key]

"""The clusters this worker serves, registered for the scheduler at each admission pass.

The local machine (`local`, unless TRAINPORT_LOCAL_CLUSTER is false) and every Kubernetes
cluster of TRAINPORT_KUBERNETES_CLUSTERS, each with its nodes' inventory (allocatable GPUs per
type; cordoned and NotReady nodes left out) and its server version (`/version`). Nodes are
listed at most every `kubernetes_inventory_seconds` per cluster, outside any transaction; a
cluster whose API cannot be reached keeps the inventory it last reported, and the next pass
tries again. A version Trainport does not support is recorded all the same (the inventory and
`/readyz` show it) and warned about once per worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from core.executor_kinds import ExecutorKind
from core.scheduling.clusters import (
    Inventory,
    register_cluster,
    sync_local_cluster,
    version_problem,
)
from core.settings import Settings
from workers.executors.registry import Where, executor_for

log = logging.getLogger("trainport.clusters")
_lock = threading.Lock()
_next_read: dict[str, float] = {}  # cluster name -> monotonic time of its next node listing
_warned: set[tuple[str, str]] = set()  # (cluster, version) whose lack of support was logged


def sync_local(session: Session, settings: Settings) -> None:
    """The local machine's row, in the admission pass's own transaction: it writes only when
    the inventory changed, so a transaction of its own was one more per pass (issue 17)."""
    if settings.local_cluster:
        sync_local_cluster(session, settings)


def sync_kubernetes_clusters(
    factory: sessionmaker[Session],
    settings: Settings,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Each Kubernetes cluster's nodes and version when due, read outside any transaction."""
    for name in settings.kubernetes_clusters:
        if not _due(name, clock(), settings.kubernetes_inventory_seconds):
            continue
        inventory = read_kubernetes_inventory(name, settings)
        if inventory is not None:
            version = read_server_version(name, settings)
            with session_scope(factory) as session:
                register_cluster(session, name, ExecutorKind.KUBERNETES, inventory, version)
            _warn_if_unsupported(name, version)


def _due(name: str, now: float, interval: float) -> bool:
    with _lock:
        if now < _next_read.get(name, 0.0):
            return False
        _next_read[name] = now + interval
        return True


def read_kubernetes_inventory(name: str, settings: Settings) -> Inventory | None:
    """Cluster `name`'s inventory from its nodes; None (logged) when its API fails."""
    from workers.executors.kubernetes import KubernetesExecutor, read_inventory

    executor = executor_for(Where(name, ExecutorKind.KUBERNETES), settings)
    assert isinstance(executor, KubernetesExecutor)
    try:
        return read_inventory(executor.apis, settings.for_kubernetes_cluster(name))
    except Exception as exc:
        log.warning("cannot read the nodes of Kubernetes cluster %s: %s", name, exc)
        return None


def read_server_version(name: str, settings: Settings) -> str | None:
    """Cluster `name`'s gitVersion; None (logged) when it cannot be read this time."""
    from workers.executors.kubernetes import KubernetesExecutor

    executor = executor_for(Where(name, ExecutorKind.KUBERNETES), settings)
    assert isinstance(executor, KubernetesExecutor)
    return executor.server_version()


def _warn_if_unsupported(name: str, version: str | None) -> None:
    problem = version_problem(version)
    with _lock:
        if problem is None or (name, str(version)) in _warned:
            return
        _warned.add((name, str(version)))
    log.warning("Kubernetes cluster %s is not supported: %s", name, problem)


def forget_inventory_reads() -> None:
    """Read every cluster's nodes on the next pass (tests, and a worker that reconfigured)."""
    with _lock:
        _next_read.clear()

"""The cluster registry: every place runs execute, its executor kind and its inventory.

The local cluster (`local`, executor `local`) is registered from settings by whichever worker
schedules: `TRAINPORT_LOCAL_CPU_SLOTS` CPU slots (default: this machine's CPU count) and
`TRAINPORT_LOCAL_GPUS` GPUs per type (default: none). The Kubernetes executor will register its
clusters with the nodes' allocatable GPUs through the same `register_cluster`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import Cluster, utcnow
from core.settings import Settings

LOCAL_CLUSTER = "local"


@dataclass(frozen=True)
class Inventory:
    """Everything a cluster holds: GPUs per type, CPU slots (None: unlimited), nodes."""

    gpus: dict[str, int] = field(default_factory=dict)
    cpu_slots: int | None = None
    nodes: int = 1

    def to_document(self) -> dict[str, Any]:
        return {"gpus": dict(self.gpus), "cpu_slots": self.cpu_slots, "nodes": self.nodes}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Inventory:
        gpus = {str(k): int(v) for k, v in (document.get("gpus") or {}).items()}
        slots = document.get("cpu_slots")
        return cls(gpus, None if slots is None else int(slots), int(document.get("nodes") or 1))


def local_inventory(settings: Settings) -> Inventory:
    slots = settings.local_cpu_slots or os.cpu_count() or 1
    return Inventory(dict(settings.local_gpus), slots, nodes=1)


def register_cluster(session: Session, name: str, executor: str, inventory: Inventory) -> None:
    """Create or update a cluster; writes only when something changed."""
    document = inventory.to_document()
    cluster = session.get(Cluster, name)
    if cluster is not None:
        if cluster.executor != executor or cluster.inventory != document:
            cluster.executor, cluster.inventory, cluster.updated_at = executor, document, utcnow()
            session.flush()
        return
    try:
        with session.begin_nested():
            session.add(Cluster(name=name, executor=executor, inventory=document))
    except IntegrityError:  # another worker registered it first: update that row instead
        register_cluster(session, name, executor, inventory)


def sync_local_cluster(session: Session, settings: Settings) -> None:
    register_cluster(session, LOCAL_CLUSTER, "local", local_inventory(settings))


def list_clusters(session: Session) -> Sequence[Cluster]:
    return session.scalars(select(Cluster).order_by(Cluster.name)).all()


def lock_clusters(session: Session) -> Sequence[Cluster]:
    """Every cluster row, locked in name order until the transaction ends.

    Every admission takes capacity on some cluster, so holding all of these serialises
    admission passes: a second scheduler waits here, then reads the first one's grants.
    """
    return session.scalars(select(Cluster).order_by(Cluster.name).with_for_update()).all()

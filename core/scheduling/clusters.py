"""The cluster registry: every place runs execute, its executor kind and its inventory.

The local cluster (`local`, executor `local`) is registered from settings by whichever worker
schedules: `TRAINPORT_LOCAL_CPU_SLOTS` CPU slots (default: this machine's CPU count) and
`TRAINPORT_LOCAL_GPUS` GPUs per type (default: none). The Kubernetes executor registers its
clusters with the nodes' allocatable GPUs through the same `register_cluster`, with the server
version the cluster's `/version` reports; `version_problem` is the one rule for which versions
Trainport supports (the inventory and `/readyz` show the clusters it marks).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.executor_kinds import LOCAL_CLUSTER, ExecutorKind
from core.models import Cluster, utcnow
from core.settings import Settings

# The oldest Kubernetes the Job manifests are built for (the README's supported range): Job
# podFailurePolicy and podReplacementPolicy. Older servers drop what they do not know.
OLDEST_SUPPORTED = (1, 31)
# Indexed Jobs (completionMode), which give each pod of a multi-node run its NODE_RANK.
INDEXED_JOBS = (1, 22)
_VERSION = re.compile(r"v?(\d+)\.(\d+)")


def parse_version(text: str | None) -> tuple[int, int] | None:
    """(major, minor) of a server's gitVersion (`v1.20.2`, `v1.29.3-eks-4f4795d`)."""
    match = _VERSION.match(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def version_problem(server_version: str | None) -> str | None:
    """Why Trainport does not support a Kubernetes server version; None when it does (or when
    the version is not known yet)."""
    found = parse_version(server_version)
    if found is None or found >= OLDEST_SUPPORTED:
        return None
    oldest = ".".join(map(str, OLDEST_SUPPORTED))
    problem = (
        f"Kubernetes {server_version} is older than {oldest}, the oldest supported (Jobs "
        "lose podFailurePolicy and podReplacementPolicy)"
    )
    if found < INDEXED_JOBS:
        indexed = ".".join(map(str, INDEXED_JOBS))
        problem += f"; it has no Indexed Jobs, so multi-node runs need >= {indexed} and are refused"
    return problem


NodeGpus = dict[str, dict[str, int]]  # node name -> GPU type -> GPUs


@dataclass(frozen=True)
class Inventory:
    """Everything a cluster holds: GPUs per type, CPU slots (None: unlimited), nodes, and the
    GPUs of each node (a gang needs `nodes` distinct nodes with `gpus_per_node` free each)."""

    gpus: dict[str, int] = field(default_factory=dict)
    cpu_slots: int | None = None
    nodes: int = 1
    node_gpus: NodeGpus = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        return {
            "gpus": dict(self.gpus),
            "cpu_slots": self.cpu_slots,
            "nodes": self.nodes,
            "node_gpus": {node: dict(gpus) for node, gpus in sorted(self.node_gpus.items())},
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Inventory:
        gpus = {str(k): int(v) for k, v in (document.get("gpus") or {}).items()}
        slots = document.get("cpu_slots")
        nodes = int(document.get("nodes") or 1)
        per_node = {
            str(node): {str(t): int(n) for t, n in (held or {}).items()}
            for node, held in (document.get("node_gpus") or {}).items()
        }
        return cls(
            gpus, None if slots is None else int(slots), nodes, per_node or _spread(gpus, nodes)
        )


def _spread(gpus: dict[str, int], nodes: int) -> NodeGpus:
    """Nodes for an inventory recorded before per-node GPUs were: each type spread evenly."""
    spread: NodeGpus = {f"node-{index}": {} for index in range(nodes)}
    for gpu_type, total in gpus.items():
        for index in range(nodes):
            share = total // nodes + (1 if index < total % nodes else 0)
            if share:
                spread[f"node-{index}"][gpu_type] = share
    return {node: held for node, held in spread.items() if held}


def local_inventory(settings: Settings) -> Inventory:
    slots = settings.local_cpu_slots or os.cpu_count() or 1
    gpus = dict(settings.local_gpus)
    return Inventory(gpus, slots, nodes=1, node_gpus={LOCAL_CLUSTER: gpus} if gpus else {})


def register_cluster(
    session: Session,
    name: str,
    executor: str,
    inventory: Inventory,
    server_version: str | None = None,
) -> None:
    """Create or update a cluster; writes only when something changed. A version of None
    (not read this time) keeps the one recorded."""
    document = inventory.to_document()
    cluster = session.get(Cluster, name)
    if cluster is not None:
        version = server_version or cluster.server_version
        if (cluster.executor, cluster.inventory, cluster.server_version) != (
            executor, document, version
        ):  # fmt: skip
            cluster.executor, cluster.inventory, cluster.updated_at = executor, document, utcnow()
            cluster.server_version = version
            session.flush()
        return
    try:
        with session.begin_nested():
            row = Cluster(
                name=name, executor=executor, inventory=document, server_version=server_version
            )
            session.add(row)
    except IntegrityError:  # another worker registered it first: update that row instead
        register_cluster(session, name, executor, inventory, server_version)


def sync_local_cluster(session: Session, settings: Settings) -> None:
    register_cluster(session, LOCAL_CLUSTER, ExecutorKind.LOCAL, local_inventory(settings))


def list_clusters(session: Session) -> Sequence[Cluster]:
    return session.scalars(select(Cluster).order_by(Cluster.name)).all()


def unsupported_clusters(session: Session) -> dict[str, str]:
    """Each registered cluster whose server version Trainport does not support, and why."""
    rows = session.execute(select(Cluster.name, Cluster.server_version).order_by(Cluster.name))
    return {name: problem for name, version in rows if (problem := version_problem(version))}


def lock_clusters(session: Session) -> Sequence[Cluster]:
    """Every cluster row, locked in name order until the transaction ends.

    Every admission takes capacity on some cluster, so holding all of these serialises
    admission passes: a second scheduler waits here, then reads the first one's grants.
    """
    return session.scalars(select(Cluster).order_by(Cluster.name).with_for_update()).all()

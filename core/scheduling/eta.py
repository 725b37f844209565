"""A queued run's estimated start: when enough running work ends to make room for it.

Running attempts end at `started_at + scheduling.max_duration` at the latest, or sooner when
their runtime's progress (steps left at the measured step rate) says so. Counting the
GPUs (or CPU slots) they give back in that order on each cluster where the run could go, the
estimate is the first moment the run fits (node-shaped for a GPU gang). It is an estimate for
one run alone that ignores the runs ahead of it; a holding with neither a max_duration nor a
progress estimate makes the estimate unknown on its cluster.
"""

from __future__ import annotations

from datetime import datetime

from core.scheduling.placement import fits, give
from core.scheduling.planner import ClusterState, Needs, Snapshot


def estimate_start(needs: Needs, snapshot: Snapshot) -> datetime | None:
    best: datetime | None = None
    for cluster in snapshot.clusters:
        if needs.nodes > cluster.nodes:
            continue
        types = cluster.types_for(needs) if needs.gpus else [None]
        for gpu_type in types:
            found = _slot_eta(needs, snapshot, cluster, gpu_type)
            if found is not None and (best is None or found < best):
                best = found
    return best


def _slot_eta(
    needs: Needs, snapshot: Snapshot, cluster: ClusterState, gpu_type: str | None
) -> datetime | None:
    """Release the cluster's holdings in the order they end until the run fits, node-shaped
    for a GPU gang; the moment that happens."""
    held = [
        h
        for h in snapshot.holdings
        if h.cluster == cluster.name and (h.gpu_type == gpu_type if needs.gpus else h.cpu_slots)
    ]
    free = dict(cluster.node_free.get(gpu_type or "", {}))
    slots = cluster.free_slots

    def fits_now() -> bool:
        if needs.gpus:
            return fits(free, needs.nodes, needs.per_node)
        return slots is None or slots >= needs.cpu_slots

    if fits_now():
        return snapshot.now
    for holding in sorted(held, key=lambda h: (h.ends_at is None, h.ends_at or snapshot.now)):
        if holding.ends_at is None:
            return None
        give(free, holding.placement)
        slots = None if slots is None else slots + holding.cpu_slots
        if fits_now():
            return max(holding.ends_at, snapshot.now)
    return None

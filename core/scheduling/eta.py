"""A queued run's estimated start: when enough running work ends to make room for it.

Running attempts end at `started_at + scheduling.max_duration` at the latest, or sooner when
their runtime's progress (steps left at the measured step rate) says so. Counting the
GPUs (or CPU slots) they give back in that order on each cluster where the run could go, the
estimate is the first moment the free capacity reaches what the run needs. It is an upper
estimate for one run alone and ignores node shape and the runs ahead of it; a holding with
neither a max_duration nor a progress estimate makes the estimate unknown on its cluster.
"""

from __future__ import annotations

from datetime import datetime

from core.scheduling.planner import ClusterState, Needs, Snapshot


def estimate_start(needs: Needs, snapshot: Snapshot) -> datetime | None:
    best: datetime | None = None
    for cluster in snapshot.clusters:
        if needs.nodes > cluster.nodes:
            continue
        types = cluster.types_for(needs) if needs.gpus else [None]
        for gpu_type in types:
            found = _slot_eta(needs, snapshot, cluster.name, gpu_type, _free(cluster, gpu_type))
            if found is not None and (best is None or found < best):
                best = found
    return best


def _free(cluster: ClusterState, gpu_type: str | None) -> int | None:
    if gpu_type is not None:
        return cluster.free_gpus.get(gpu_type, 0)
    return cluster.free_slots


def _slot_eta(
    needs: Needs, snapshot: Snapshot, cluster: str, gpu_type: str | None, free: int | None
) -> datetime | None:
    wanted = needs.gpus or needs.cpu_slots
    if free is None or free >= wanted:
        return snapshot.now
    held = [
        h
        for h in snapshot.holdings
        if h.cluster == cluster and (h.gpu_type == gpu_type if needs.gpus else h.cpu_slots)
    ]
    for holding in sorted(held, key=lambda h: (h.ends_at is None, h.ends_at or snapshot.now)):
        if holding.ends_at is None:
            return None
        free += holding.gpus if needs.gpus else holding.cpu_slots
        if free >= wanted:
            return max(holding.ends_at, snapshot.now)
    return None

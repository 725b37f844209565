"""Node-shaped gangs: which nodes of a cluster can hold a run's `nodes x gpus_per_node` GPUs.

A run with `nodes: 2, gpus_per_node: 8` needs two distinct nodes with 8 free GPUs of its type
each, on one cluster: 4 + 4 + 4 + 4 free is 16 GPUs and still no fit. Pure functions over
`{node: free GPUs}` maps, shared by the planner, the preemption search and the queue answer.

Placement is best fit node by node: the nodes with the least free GPUs that still hold
`gpus_per_node` are taken first, so whole nodes stay whole for the gangs that need them.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping

NodeFree = dict[str, int]  # node -> free GPUs of one type


def place(free: Mapping[str, int], nodes: int, per_node: int) -> list[str] | None:
    """The `nodes` nodes with the least room that still hold `per_node` each; None: no fit."""
    fitting = [(room, node) for node, room in free.items() if room >= per_node]
    if len(fitting) < nodes:
        return None
    return [node for _, node in heapq.nsmallest(nodes, fitting)]


def fits(free: Mapping[str, int], nodes: int, per_node: int) -> bool:
    count = 0
    for room in free.values():
        if room >= per_node:
            count += 1
            if count >= nodes:
                return True
    return False


def best_fit_text(free: Mapping[str, int], nodes: int) -> str:
    """The `nodes` roomiest nodes, as people say it: `1 x 8 + 2 x 4` (or `nothing free`)."""
    largest = [room for room in heapq.nlargest(nodes, free.values()) if room > 0]
    if not largest:
        return "nothing free"
    counts = Counter(largest)
    return " + ".join(f"{counts[room]} x {room}" for room in sorted(counts, reverse=True))


def take(free: NodeFree, placement: Mapping[str, int]) -> None:
    for node, gpus in placement.items():
        free[node] = free.get(node, 0) - gpus


def give(free: NodeFree, placement: Mapping[str, int]) -> None:
    for node, gpus in placement.items():
        free[node] = free.get(node, 0) + gpus


def spread_unplaced(free: NodeFree, gpus: int) -> dict[str, int]:
    """Where an attempt recorded without a placement (before 0013) most likely sits: filled
    onto the roomiest nodes, so the ledger never shows more free than there is."""
    placement: dict[str, int] = {}
    for node in sorted(free, key=lambda n: (-free[n], n)):
        if gpus <= 0:
            break
        share = min(gpus, max(free[node], 0))
        if share:
            placement[node] = share
            gpus -= share
    return placement

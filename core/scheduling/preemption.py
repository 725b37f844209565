"""Preemption: which running runs a blocked run may stop to make room, and which it picks.

A run that cannot be admitted may preempt running runs that are `scheduling.preemptible` and
of strictly lower priority; first those of its own org, then other orgs' runs only where that
org holds more than its fair share (Kueue's `withinClusterQueue` and `reclaimWithinCohort`).
Fair share is the cluster fleet's GPUs (CPU slots for CPU runs) divided evenly among the orgs
that hold or want capacity now.

It picks the fewest victims, then the newest (least work lost), that free a node-shaped fit:
victims are tried own-org first, lowest priority first, newest first, added one at a time
until the gang fits, then every victim whose release turns out not to be needed is let go
again. Strictly lower priority is also what rules out a loop: a preemptor can never be
preempted back by its victim, nor by any run of its own priority.

Pure functions of the planner's state; core/scheduling/victims.py applies them in a pass
(a victim is preemptible, not already chosen, of strictly lower priority, and of the
preemptor's org or of an org above its fair share).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from core.scheduling.placement import NodeFree, give

PRIORITY_RANK = {"high": 2, "normal": 1, "low": 0}


@dataclass(frozen=True, eq=False)  # identity: a pass holds each attempt once
class Holding:
    """A running (or starting) attempt as preemption sees it."""

    run_id: str
    org_id: str
    project_id: str
    priority: str
    preemptible: bool
    admitted_at: datetime
    cluster: str
    gpu_type: str | None
    gpus: int
    cpu_slots: int
    placement: dict[str, int] = field(default_factory=dict)
    preempted_by: str | None = None  # already chosen as a victim of this run
    attempt: int = 1
    ends_at: datetime | None = None  # started_at + max_duration: the latest it ends


@dataclass(frozen=True)
class Preemption:
    """A plan's decision: `run_id` waits while `victims` stop, then takes their place."""

    run_id: str
    cluster: str
    gpu_type: str | None
    victims: tuple[Holding, ...]


def preference(preemptor_org: str) -> Callable[[Holding], tuple[bool, int, float]]:
    """Own org first, then the lowest priority, then the newest (least work to lose)."""

    def key(victim: Holding) -> tuple[bool, int, float]:
        other_org = bool(preemptor_org) and victim.org_id != preemptor_org
        return other_org, PRIORITY_RANK[victim.priority], -victim.admitted_at.timestamp()

    return key


def choose_gpu_victims(
    free: NodeFree, nodes: int, per_node: int, candidates: Iterable[Holding], fitting: int
) -> list[Holding] | None:
    """The victims (in preference order) whose GPUs, added to `free`, make the gang fit;
    `fitting` is how many nodes hold `per_node` free already."""
    delta: dict[str, int] = {}  # what the chosen victims give back, over `free` (not copied)
    count = fitting

    def shift(placement: dict[str, int], sign: int) -> int:
        moved = 0
        for node, gpus in placement.items():
            before = free.get(node, 0) + delta.get(node, 0) >= per_node
            delta[node] = delta.get(node, 0) + sign * gpus
            moved += int(free.get(node, 0) + delta[node] >= per_node) - int(before)
        return moved

    chosen: list[Holding] = []
    for victim in candidates:
        if count >= nodes:
            break
        chosen.append(victim)
        count += shift(victim.placement, +1)
    if count < nodes:
        return None
    needed = [True] * len(chosen)
    for index in range(len(chosen) - 2, -1, -1):  # let go of whoever is not needed after all
        count += shift(chosen[index].placement, -1)
        if count >= nodes:
            needed[index] = False
        else:
            count += shift(chosen[index].placement, +1)
    return [victim for victim, keep in zip(chosen, needed, strict=True) if keep]


def choose_slot_victims(
    free_slots: int, slots: int, candidates: Iterable[Holding]
) -> list[Holding] | None:
    chosen: list[Holding] = []
    for victim in candidates:
        if free_slots >= slots:
            break
        chosen.append(victim)
        free_slots += victim.cpu_slots
    if free_slots < slots:
        return None
    needed = [True] * len(chosen)
    for index in range(len(chosen) - 2, -1, -1):
        if free_slots - chosen[index].cpu_slots >= slots:
            needed[index] = False
            free_slots -= chosen[index].cpu_slots
    return [victim for victim, keep in zip(chosen, needed, strict=True) if keep]


def better(found: Sequence[Holding], best: Sequence[Holding] | None) -> bool:
    """Fewer victims wins; among as many, the newer ones (less work lost)."""
    if best is None:
        return True
    if len(found) != len(best):
        return len(found) < len(best)
    if not found:
        return False
    return min(v.admitted_at for v in found) > min(v.admitted_at for v in best)


def released(free: NodeFree, victims: Iterable[Holding]) -> NodeFree:
    """`free` as it will be once `victims` have stopped."""
    room = dict(free)
    for victim in victims:
        give(room, victim.placement)
    return room


class FairShare:
    """Whether an org holds more than an even split of the fleet among orgs with demand."""

    def __init__(
        self, holdings: Sequence[Holding], wanting: Iterable[str], gpus: int, slots: int | None
    ) -> None:
        orgs = {h.org_id for h in holdings} | set(wanting)
        self.gpu_share = gpus / max(1, len(orgs))
        self.slot_share = None if slots is None else slots / max(1, len(orgs))
        self.gpus: dict[str, int] = {}
        self.slots: dict[str, int] = {}
        self.epoch = 0  # moves whenever an org drops to its share or below
        for holding in holdings:
            self.gpus[holding.org_id] = self.gpus.get(holding.org_id, 0) + holding.gpus
            self.slots[holding.org_id] = self.slots.get(holding.org_id, 0) + holding.cpu_slots

    def above(self, org_id: str, gpu_run: bool) -> bool:
        if gpu_run:
            return self.gpus.get(org_id, 0) > self.gpu_share
        return self.slot_share is not None and self.slots.get(org_id, 0) > self.slot_share

    def release(self, victim: Holding) -> None:
        before = self.above(victim.org_id, True), self.above(victim.org_id, False)
        self.gpus[victim.org_id] = self.gpus.get(victim.org_id, 0) - victim.gpus
        self.slots[victim.org_id] = self.slots.get(victim.org_id, 0) - victim.cpu_slots
        if before != (self.above(victim.org_id, True), self.above(victim.org_id, False)):
            self.epoch += 1

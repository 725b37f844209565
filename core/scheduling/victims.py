"""The victim search of one planning pass: which running attempts a blocked run may stop.

The rules (who may be a victim, in which order, fewest then newest) are in
core/scheduling/preemption.py; this keeps what a pass needs to apply them fast over thousands
of runs: preemptible attempts by slot (cluster and GPU type) and by org, each list in
preference order (lowest priority, then newest), with every victim taken by an earlier
preemptor of the pass removed. Searches that failed are remembered for the rest of the pass —
free capacity and the victim pool only shrink within a pass, so a failure stays a failure:
per (needs, priority, org), and per (needs, priority) when even every lower-priority
preemptible attempt, whatever its org's share, would not have made room.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from core.scheduling.preemption import (
    PRIORITY_RANK,
    FairShare,
    Holding,
    better,
    choose_gpu_victims,
    choose_slot_victims,
    preference,
    released,
)

if TYPE_CHECKING:
    from core.scheduling.planner import Candidate, ClusterState, Needs, Snapshot

Slot = tuple[str, str | None]  # cluster, GPU type (None: CPU slots)
Found = tuple["ClusterState", str | None, list[Holding], list[Holding]]
_Eligible = Callable[["Candidate", Slot], Iterator[Holding]]


class VictimPool:
    """The running attempts a pass may preempt, and the searches already failed."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.by_slot: dict[Slot, list[Holding]] = defaultdict(list)
        self.by_org: dict[tuple[Slot, str], list[Holding]] = defaultdict(list)
        self.pending: dict[str, list[Holding]] = defaultdict(list)  # preemptor -> victims
        for holding in snapshot.holdings:
            if holding.preempted_by is not None:
                self.pending[holding.preempted_by].append(holding)
            elif holding.preemptible:
                self.by_slot[_slot_of(holding)].append(holding)
        for slot, pool in self.by_slot.items():
            pool.sort(key=preference(""))
            for holding in pool:
                self.by_org[(slot, holding.org_id)].append(holding)
        self.share = _fair_share(snapshot)
        self.taken: set[int] = set()  # id() of the holdings earlier preemptors took
        self._reclaimable: dict[Slot, tuple[int, list[Holding]]] = {}
        self.failed: set[tuple[Needs, str, str]] = set()
        self.hopeless: set[tuple[Needs, str]] = set()

    def search(
        self, candidate: Candidate, slots: Iterable[tuple[ClusterState, str | None]]
    ) -> Found | None:
        """The best slot and its victims (all, and those newly chosen), or None."""
        needs, priority = candidate.needs, candidate.priority
        own = self.pending.get(candidate.run_id, [])
        if not own and (
            (needs, priority) in self.hopeless or (needs, priority, candidate.org_id) in self.failed
        ):
            return None
        slots = list(slots)
        best: Found | None = None
        for cluster, gpu_type in slots:
            found = self._search_slot(candidate, cluster, gpu_type, own, self._eligible)
            if found is not None and (best is None or better(found, best[3])):
                mine = [v for v in own if v.cluster == cluster.name]
                best = (cluster, gpu_type, mine + found, found)
        if best is None:
            self._remember_failure(candidate, slots, own)
            return None
        for victim in best[3]:
            self._take(victim)
        return best

    def _remember_failure(
        self, candidate: Candidate, slots: list[tuple[ClusterState, str | None]], own: list[Holding]
    ) -> None:
        self.failed.add((candidate.needs, candidate.priority, candidate.org_id))
        if own:
            return
        for cluster, gpu_type in slots:
            if self._search_slot(candidate, cluster, gpu_type, [], self._lower) is not None:
                return
        self.hopeless.add((candidate.needs, candidate.priority))

    def _take(self, victim: Holding) -> None:
        slot = _slot_of(victim)
        self.taken.add(id(victim))
        self.by_slot[slot].remove(victim)
        self.by_org[(slot, victim.org_id)].remove(victim)
        self.share.release(victim)

    def reclaimable(self, slot: Slot) -> list[Holding]:
        """The slot's victims whose org is above its fair share (kept until a share changes)."""
        kept = self._reclaimable.get(slot)
        if kept is None or kept[0] != self.share.epoch:
            gpu_run = slot[1] is not None
            pool = self.by_slot.get(slot, [])
            kept = (self.share.epoch, [v for v in pool if self.share.above(v.org_id, gpu_run)])
            self._reclaimable[slot] = kept
        return kept[1]

    def _search_slot(
        self,
        candidate: Candidate,
        cluster: ClusterState,
        gpu_type: str | None,
        own: list[Holding],
        eligible: _Eligible,
    ) -> list[Holding] | None:
        needs = candidate.needs
        gpu_run = bool(needs.gpus)
        slot = (cluster.name, gpu_type if gpu_run else None)
        mine = [v for v in own if _slot_of(v) == slot]
        pool = eligible(candidate, slot)
        if not gpu_run:
            if cluster.free_slots is None:
                return None
            start = cluster.free_slots + sum(v.cpu_slots for v in mine)
            return choose_slot_victims(start, needs.cpu_slots, pool)
        free = cluster.node_free.get(gpu_type or "", {})
        fitting = len(cluster.fitting(gpu_type, needs.per_node))
        if mine:
            free = released(free, mine)
            fitting = sum(1 for room in free.values() if room >= needs.per_node)
        return choose_gpu_victims(free, needs.nodes, needs.per_node, pool, fitting)

    def _eligible(self, candidate: Candidate, slot: Slot) -> Iterator[Holding]:
        """Victims in preference order: own org first, then the others above their share;
        lazily, as a search mostly stops after a few."""
        rank = PRIORITY_RANK[candidate.priority]
        for victim in self.by_org.get((slot, candidate.org_id), ()):
            if PRIORITY_RANK[victim.priority] >= rank:
                break
            yield victim
        for victim in self.reclaimable(slot):
            if PRIORITY_RANK[victim.priority] >= rank:
                break
            if victim.org_id != candidate.org_id and id(victim) not in self.taken:
                yield victim

    def _lower(self, candidate: Candidate, slot: Slot) -> Iterator[Holding]:
        """Every lower-priority victim, whatever its org's share: the most any org could get."""
        rank = PRIORITY_RANK[candidate.priority]
        for victim in self.by_slot.get(slot, ()):
            if PRIORITY_RANK[victim.priority] >= rank:
                break
            yield victim


def _slot_of(holding: Holding) -> Slot:
    return holding.cluster, holding.gpu_type if holding.gpus else None


def _fair_share(snapshot: Snapshot) -> FairShare:
    """An even split of the fleet among the orgs that hold or want capacity now."""
    gpus = sum(sum(c.free_gpus.values()) for c in snapshot.clusters)
    gpus += sum(h.gpus for h in snapshot.holdings)
    slots: int | None = None
    if all(c.free_slots is not None for c in snapshot.clusters):
        slots = sum(c.free_slots or 0 for c in snapshot.clusters)
        slots += sum(h.cpu_slots for h in snapshot.holdings)
    wanting = (c.org_id for c in snapshot.candidates)
    return FairShare(snapshot.holdings, wanting, gpus, slots)

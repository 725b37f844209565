"""The admission plan: which queued runs start now, on which cluster, and why the others wait.

A pure function of a snapshot (queued runs, free capacity, quota holdings, recent usage), so
the scheduler and "why is my run pending" share one code path, and tests need no database.

Order:
1. Priority: every `high` run is considered before any `normal` one, `normal` before `low`.
2. Within a priority, runs that have starved (see below) first, oldest first.
3. Then fair share: the org with the least recent GPU usage goes next (then, inside the org,
   the project with the least); each admission charges its owner at once, so one pass
   interleaves owners instead of emptying the first owner's queue. Recent usage is the
   GPU-seconds of attempts in the last `fair_share_window_hours`, plus one GPU-hour for every
   GPU held right now.
4. Then FIFO: within one owner, the run queued first goes first.

Budgets: a run whose org or project has spent a `hard` budget (core/usage/budgets.py) is not
admitted and reserves nothing: it waits with `budget_exhausted`.

Gang admission: a run is granted all `nodes x gpus_per_node` GPUs of one type on one cluster,
or nothing, and node by node: `nodes` distinct nodes with `gpus_per_node` free each
(core/scheduling/placement.py); the grant records that placement. Runs without GPUs take CPU
slots (`nodes x processes`, at least one per node).

Preemption: a run that fits nowhere may stop lower-priority preemptible runs
(core/scheduling/preemption.py for the rules, victims.py for the search). The plan lists each
preemption; the preemptor stays queued (`preempting`) and the free part of its fit is held
for it, in this pass and each later one until its victims are gone. A run stopped by a quota
does not preempt: preemption makes cluster room, not quota headroom.

Anti-starvation: a run queued for longer than `scheduler_starvation_seconds` that does not fit
*reserves* what blocks it: the free GPUs of its type (or CPU slots) on the cluster closest to
holding it, or the free headroom of the quota that stops it. Runs considered after it (its own
priority or lower) cannot use a reservation, so as running work finishes the freed capacity
accumulates for the starved run until it fits: a stream of small runs can delay a large one by
at most the threshold plus the time the work already running takes to finish. Only its own
blocker is reserved: a run stopped by its org's quota never idles cluster capacity for others.
Higher priorities are strict and are not held back by a reservation.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.runs.attempts import Grant
from core.scheduling.placement import NodeFree, best_fit_text, place, take
from core.scheduling.preemption import Holding, Preemption, released
from core.scheduling.victims import VictimPool

PRIORITY_ORDER = ("high", "normal", "low")
HELD_GPU_CHARGE_SECONDS = 3600.0  # a GPU held now weighs like one GPU-hour of recent usage
Owner = tuple[str, str]  # (org_id, project_id); project "" is the org-wide scope


class QueueReason(StrEnum):
    SUBMITTED = "submitted"  # pending: not yet accepted into the queue
    QUOTA_EXHAUSTED = "quota_exhausted"
    BUDGET_EXHAUSTED = "budget_exhausted"  # a hard budget of its org or project is spent
    NO_CAPACITY = "no_capacity"
    RESERVED = "reserved"  # what it needs is held for a run that has waited too long
    PREEMPTING = "preempting"  # lower-priority runs are stopping to make room for it
    READY = "ready"  # it fits: the next scheduler pass starts it


@dataclass(frozen=True)
class Blocker:
    reason: QueueReason
    detail: str


@dataclass(frozen=True)
class Needs:
    nodes: int
    gpus: int  # nodes x gpus_per_node
    gpu_type: str | None
    cpu_slots: int

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Needs:
        compute = spec.get("compute") or {}
        nodes = int(compute.get("nodes") or 1)
        gpus = nodes * int(compute.get("gpus_per_node") or 0)
        slots = 0 if gpus else nodes * int(compute.get("processes") or 1)
        return cls(nodes, gpus, compute.get("gpu_type"), slots)

    @property
    def per_node(self) -> int:
        return self.gpus // self.nodes

    def describe(self) -> str:
        if self.gpus:
            kind = f" {self.gpu_type}" if self.gpu_type else " GPUs"
            return f"{self.nodes} x {self.per_node}{kind} on one cluster"
        return f"{self.cpu_slots} CPU slot{'s' if self.cpu_slots != 1 else ''}"


@dataclass(frozen=True)
class Candidate:
    run_id: str
    org_id: str
    project_id: str
    priority: str
    queued_at: datetime
    needs: Needs
    max_pending: float | None = None  # scheduling.max_pending: its limit on the queue wait


@dataclass
class ClusterState:
    """Free capacity of one cluster during a plan; reservations are tracked beside it.

    `node_free` holds the free GPUs of each type node by node (`free_gpus` is their sum); a
    state built without it spreads each type evenly over `nodes` nodes."""

    name: str
    nodes: int
    free_gpus: dict[str, int]
    free_slots: int | None  # None: unlimited
    node_free: dict[str, NodeFree] = field(default_factory=dict)  # gpu type -> node -> free
    reserved_gpus: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    reserved_slots: int = 0
    version: int = 0  # moves on every change, so what is derived from the nodes can be kept
    _fitting: dict[tuple[str, int], tuple[int, list[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for gpu_type, total in self.free_gpus.items():
            if gpu_type not in self.node_free:
                count = max(1, self.nodes)
                self.node_free[gpu_type] = {
                    f"node-{i}": total // count + (1 if i < total % count else 0)
                    for i in range(count)
                }

    def fitting(self, gpu_type: str | None, per_node: int) -> list[str]:
        """The nodes with `per_node` GPUs of the type free (kept until the cluster changes)."""
        key = (gpu_type or "", per_node)
        kept = self._fitting.get(key)
        if kept is None or kept[0] != self.version:
            free = self.node_free.get(gpu_type or "", {})
            kept = (self.version, [node for node, room in free.items() if room >= per_node])
            self._fitting[key] = kept
        return kept[1]

    def placement(self, needs: Needs, gpu_type: str | None) -> dict[str, int] | None:
        """Where a gang fits now, node by node; {} for CPU runs; None when it does not fit."""
        if not needs.gpus:
            return {}
        fitting = self.fitting(gpu_type, needs.per_node)
        if len(fitting) < needs.nodes:
            return None
        free = self.node_free.get(gpu_type or "", {})
        nodes = place({node: free[node] for node in fitting}, needs.nodes, needs.per_node)
        return None if nodes is None else dict.fromkeys(nodes, needs.per_node)

    def take(self, gpu_type: str | None, placement: dict[str, int], slots: int = 0) -> None:
        self.version += 1
        if placement:
            take(self.node_free.setdefault(gpu_type or "", {}), placement)
            self.free_gpus[gpu_type or ""] = self.free_gpus.get(gpu_type or "", 0) - sum(
                placement.values()
            )
        if slots and self.free_slots is not None:
            self.free_slots -= slots

    def types_for(self, needs: Needs) -> list[str]:
        if needs.gpu_type is not None:
            return [needs.gpu_type] if needs.gpu_type in self.free_gpus else []
        return list(self.free_gpus)

    def room(self, needs: Needs, gpu_type: str | None, honour_reservations: bool) -> int:
        """How much of what `needs` wants is free here (GPUs of `gpu_type`, or CPU slots)."""
        if needs.gpus:
            held = self.reserved_gpus[gpu_type or ""] if honour_reservations else 0
            return self.free_gpus.get(gpu_type or "", 0) - held
        if self.free_slots is None:
            return needs.cpu_slots
        return self.free_slots - (self.reserved_slots if honour_reservations else 0)


@dataclass
class Scope:
    """A quota scope (an org, or one project) during a plan: limits, holdings, reservations."""

    label: str  # "org acme" / "project vision"
    max_gpus: int | None = None
    max_runs: int | None = None
    gpus: int = 0
    runs: int = 0
    reserved_gpus: int = 0
    reserved_runs: int = 0

    def blocker(self, needs: Needs) -> Blocker | None:
        if self.max_gpus is not None and needs.gpus > self.max_gpus:
            detail = f"needs {needs.gpus} GPUs; the quota of {self.label} allows {self.max_gpus}"
            return Blocker(QueueReason.QUOTA_EXHAUSTED, detail)
        if (
            self.max_gpus is not None
            and self.gpus + self.reserved_gpus + needs.gpus > self.max_gpus
        ):
            detail = f"{self.gpus} of {self.max_gpus} GPUs of {self.label} in use"
            return Blocker(QueueReason.QUOTA_EXHAUSTED, detail + self._held_note())
        if self.max_runs is not None and self.runs + self.reserved_runs + 1 > self.max_runs:
            detail = f"{self.runs} of {self.max_runs} running runs of {self.label}"
            return Blocker(QueueReason.QUOTA_EXHAUSTED, detail + self._held_note())
        return None

    def _held_note(self) -> str:
        if self.reserved_gpus or self.reserved_runs:
            return " (the rest is held for a run that has waited longer)"
        return ""

    def reserve(self, needs: Needs) -> None:
        if self.max_gpus is not None:
            headroom = self.max_gpus - self.gpus - self.reserved_gpus
            self.reserved_gpus += max(0, min(headroom, needs.gpus))
        if self.max_runs is not None and self.runs + self.reserved_runs < self.max_runs:
            self.reserved_runs += 1


@dataclass
class Snapshot:
    candidates: Sequence[Candidate]
    clusters: list[ClusterState]
    scopes: dict[Owner, Scope]  # org scope under (org_id, ""), projects under (org_id, prj)
    usage: dict[Owner, float]  # recent GPU-seconds, same keys
    now: datetime
    starvation_seconds: float
    holdings: Sequence[Holding] = ()  # what runs now: the preemption candidates
    # Owners whose hard budget is spent, and why (core/usage/budgets.py): nothing is admitted.
    budget_exhausted: dict[Owner, str] = field(default_factory=dict)


@dataclass
class Plan:
    order: list[str] = field(default_factory=list)
    admitted: list[tuple[Candidate, Grant]] = field(default_factory=list)
    blocked: dict[str, Blocker] = field(default_factory=dict)
    owners: dict[str, Owner] = field(default_factory=dict)  # run id -> (org, project)
    preemptions: list[Preemption] = field(default_factory=list)

    def position(self, run_id: str, visible: Callable[[Owner], bool]) -> int | None:
        """1 + the runs ahead of `run_id` whose owner is `visible`: a tenant's position counts
        only what it may see, so it never learns how busy other tenants are."""
        if run_id not in self.owners:
            return None
        ahead = self.order[: self.order.index(run_id)]
        return 1 + sum(1 for other in ahead if visible(self.owners[other]))


def plan_admissions(snapshot: Snapshot) -> Plan:
    """Decide, without side effects, what this pass admits and whom it preempts."""
    planner = _Planner(snapshot)
    for priority in PRIORITY_ORDER:
        runs = [c for c in snapshot.candidates if c.priority == priority]
        starving = [c for c in runs if planner.starving(c)]
        for candidate in sorted(starving, key=_fifo):
            planner.consider(candidate, starving=True)
        planner.fair_share([c for c in runs if not planner.starving(c)])
    return planner.plan


def _fifo(candidate: Candidate) -> tuple[datetime, str]:
    return candidate.queued_at, candidate.run_id


class _Planner:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.plan = Plan()
        self.usage: dict[Owner, float] = defaultdict(float, snapshot.usage)
        self.victims = VictimPool(snapshot)
        self._shapes: dict[tuple[Needs, tuple[int, ...]], str] = {}

    def starving(self, candidate: Candidate) -> bool:
        waited = (self.snapshot.now - candidate.queued_at).total_seconds()
        return waited >= self.snapshot.starvation_seconds

    def fair_share(self, runs: Iterable[Candidate]) -> None:
        queues: dict[Owner, deque[Candidate]] = defaultdict(deque)
        for candidate in sorted(runs, key=_fifo):
            queues[(candidate.org_id, candidate.project_id)].append(candidate)
        heap = [self._turn(owner, queue[0]) for owner, queue in queues.items()]
        heapq.heapify(heap)
        while heap:
            *_, owner = heapq.heappop(heap)
            self.consider(queues[owner].popleft(), starving=False)
            if queues[owner]:
                heapq.heappush(heap, self._turn(owner, queues[owner][0]))

    def _turn(self, owner: Owner, head: Candidate) -> tuple[float, float, datetime, str, Owner]:
        org_usage = self.usage[(owner[0], "")]
        return org_usage, self.usage[owner], head.queued_at, head.run_id, owner

    def consider(self, candidate: Candidate, *, starving: bool) -> None:
        self.plan.order.append(candidate.run_id)
        self.plan.owners[candidate.run_id] = (candidate.org_id, candidate.project_id)
        if (spent := self._budget_blocker(candidate)) is not None:
            self.plan.blocked[candidate.run_id] = spent
            return
        scopes = self._scopes(candidate)
        for scope in scopes:
            if (blocker := scope.blocker(candidate.needs)) is not None:
                if starving:
                    scope.reserve(candidate.needs)
                self.plan.blocked[candidate.run_id] = blocker
                return
        fit = self._best_fit(candidate.needs)
        if fit is not None:
            self._admit(candidate, scopes, *fit)
            return
        preempting = self._preempt(candidate)
        if preempting is not None:
            self.plan.blocked[candidate.run_id] = preempting
            return
        self.plan.blocked[candidate.run_id] = self._capacity_blocker(candidate, starving)

    def _budget_blocker(self, candidate: Candidate) -> Blocker | None:
        for owner in ((candidate.org_id, ""), (candidate.org_id, candidate.project_id)):
            if (why := self.snapshot.budget_exhausted.get(owner)) is not None:
                return Blocker(QueueReason.BUDGET_EXHAUSTED, why)
        return None

    def _scopes(self, candidate: Candidate) -> list[Scope]:
        keys = [(candidate.org_id, ""), (candidate.org_id, candidate.project_id)]
        return [self.snapshot.scopes[key] for key in keys if key in self.snapshot.scopes]

    def _slots(self, needs: Needs) -> Iterable[tuple[ClusterState, str | None]]:
        for cluster in self.snapshot.clusters:
            if needs.nodes > cluster.nodes:
                continue
            if needs.gpus:
                yield from ((cluster, gpu_type) for gpu_type in cluster.types_for(needs))
            else:
                yield cluster, None

    def _best_fit(self, needs: Needs) -> tuple[ClusterState, str | None, dict[str, int]] | None:
        """The place where it fits leaving the least free: big holes stay for big runs."""
        best: tuple[int, str, ClusterState, str | None, dict[str, int]] | None = None
        for cluster, gpu_type in self._slots(needs):
            room = cluster.room(needs, gpu_type, True)
            if room < (needs.gpus or needs.cpu_slots):
                continue  # the quick test first: most blocked runs stop here
            if best is not None and (room, cluster.name) >= best[:2]:
                continue
            placement = cluster.placement(needs, gpu_type)
            if placement is not None:
                best = (room, cluster.name, cluster, gpu_type, placement)
        return None if best is None else best[2:]

    def _best_shape(self, needs: Needs) -> str:
        """The roomiest nodes of the slot that comes closest, for the queue answer (kept while
        no cluster changes: a pass may block thousands of runs of a few shapes)."""
        key = (needs, tuple(cluster.version for cluster in self.snapshot.clusters))
        if key not in self._shapes:
            self._shapes[key] = self._shape_text(needs)
        return self._shapes[key]

    def _shape_text(self, needs: Needs) -> str:
        texts = []
        for cluster, gpu_type in self._slots(needs):
            free = cluster.node_free.get(gpu_type or "", {})
            usable = sorted((room for room in free.values() if room > 0), reverse=True)
            texts.append((usable[: needs.nodes], best_fit_text(free, needs.nodes)))
        return max(texts)[1] if texts else "nothing free"

    def _largest(
        self, needs: Needs, honour_reservations: bool
    ) -> tuple[int, ClusterState | None, str | None]:
        best: tuple[int, ClusterState | None, str | None] = (0, None, None)
        for cluster, gpu_type in self._slots(needs):
            room = cluster.room(needs, gpu_type, honour_reservations)
            if best[1] is None or room > best[0]:
                best = (room, cluster, gpu_type)
        return best

    def _capacity_blocker(self, candidate: Candidate, starving: bool) -> Blocker:
        needs = candidate.needs
        free, cluster, gpu_type = self._largest(needs, honour_reservations=False)
        wanted = needs.gpus or needs.cpu_slots
        if (
            cluster is not None
            and free >= wanted
            and cluster.placement(needs, gpu_type) is not None
        ):
            detail = f"needs {needs.describe()}; {free} free, held for a run that has waited longer"
            blocker = Blocker(QueueReason.RESERVED, detail)
        elif needs.gpus:
            detail = f"needs {needs.describe()}, best fit {self._best_shape(needs)}"
            blocker = Blocker(QueueReason.NO_CAPACITY, detail)
        else:
            detail = f"needs {needs.describe()}, largest free {max(free, 0)}"
            blocker = Blocker(QueueReason.NO_CAPACITY, detail)
        if starving and cluster is not None:
            self._reserve(cluster, gpu_type, needs)
        return blocker

    def _reserve(self, cluster: ClusterState, gpu_type: str | None, needs: Needs) -> None:
        room = max(0, cluster.room(needs, gpu_type, True))
        if needs.gpus:
            cluster.reserved_gpus[gpu_type or ""] += min(room, needs.gpus)
        elif cluster.free_slots is not None:
            cluster.reserved_slots += min(room, needs.cpu_slots)

    def _admit(
        self,
        candidate: Candidate,
        scopes: list[Scope],
        cluster: ClusterState,
        gpu_type: str | None,
        placement: dict[str, int],
    ) -> None:
        needs = candidate.needs
        cluster.take(gpu_type, placement, needs.cpu_slots)
        for scope in scopes:
            scope.gpus += needs.gpus
            scope.runs += 1
        charge = needs.gpus * HELD_GPU_CHARGE_SECONDS
        self.usage[(candidate.org_id, "")] += charge
        self.usage[(candidate.org_id, candidate.project_id)] += charge
        grant = Grant(cluster.name, gpu_type, needs.gpus, needs.cpu_slots, placement)
        self.plan.admitted.append((candidate, grant))

    def _preempt(self, candidate: Candidate) -> Blocker | None:
        """Room made by stopping lower-priority preemptible runs (core/scheduling/preemption.py):
        the free part of the chosen fit is held for the preemptor from now on, so nothing
        admitted after it in this pass (or the next, while its victims stop) takes it."""
        found = self.victims.search(candidate, self._slots(candidate.needs))
        if found is None:
            return None
        cluster, gpu_type, victims, fresh = found
        self._hold_for(candidate.needs, cluster, gpu_type, victims)
        if fresh:
            self.plan.preemptions.append(
                Preemption(candidate.run_id, cluster.name, gpu_type, tuple(fresh))
            )
        names = ", ".join(v.run_id for v in victims)
        detail = (
            f"needs {candidate.needs.describe()}; preempting {len(victims)} lower-priority "
            f"run{'s' if len(victims) != 1 else ''} ({names}), which stop after their "
            "checkpoint grace"
        )
        return Blocker(QueueReason.PREEMPTING, detail)

    def _hold_for(
        self, needs: Needs, cluster: ClusterState, gpu_type: str | None, victims: list[Holding]
    ) -> None:
        if not needs.gpus:
            freed = sum(v.cpu_slots for v in victims)
            cluster.take(None, {}, max(0, needs.cpu_slots - freed))
            return
        free = cluster.node_free.get(gpu_type or "", {})
        near = {n for v in victims for n in v.placement} | set(
            cluster.fitting(gpu_type, needs.per_node)
        )
        after = released({n: free.get(n, 0) for n in near}, victims)
        nodes = place(after, needs.nodes, needs.per_node) or []
        given = released({}, victims)
        hold = {
            n: min(max(free.get(n, 0), 0), max(0, needs.per_node - given.get(n, 0))) for n in nodes
        }
        cluster.take(gpu_type, {n: g for n, g in hold.items() if g})


def fits_anywhere(needs: Needs, clusters: Sequence[ClusterState]) -> str | None:
    """None if some cluster could ever hold the run; else why none can (for `unschedulable`)."""
    best = "nothing"
    for cluster in clusters:
        if needs.nodes > cluster.nodes:
            continue
        if not needs.gpus:
            total = cluster.free_slots
            if total is None or total >= needs.cpu_slots:
                return None
            best = str(total)
            continue
        for gpu_type in cluster.types_for(needs):
            if cluster.placement(needs, gpu_type) is not None:
                return None
            best = best_fit_text(cluster.node_free.get(gpu_type, {}), needs.nodes)
    nodes = max((c.nodes for c in clusters), default=0)
    if needs.nodes > nodes:
        return f"needs {needs.nodes} nodes; the largest cluster has {nodes}"
    if needs.gpus:
        return f"needs {needs.describe()}; the best fit any cluster has is {best}"
    return f"needs {needs.describe()}; the largest cluster has {best}"

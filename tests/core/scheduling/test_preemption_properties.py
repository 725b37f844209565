"""Properties of the planner with preemption, over random snapshots (hypothesis): it never
over-commits a node, never picks a non-preemptible or not-lower-priority victim, and its
preemptions can never form a cycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core.scheduling.planner import Candidate, ClusterState, Needs, Snapshot, plan_admissions
from core.scheduling.preemption import PRIORITY_RANK, Holding

NOW = datetime(2026, 12, 4, tzinfo=UTC)
PRIORITIES = ["low", "normal", "high"]


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[Snapshot, dict[str, int]]:
    sizes = draw(st.lists(st.sampled_from([4, 8]), min_size=1, max_size=6))
    capacity = {f"n{i}": size for i, size in enumerate(sizes)}
    free = dict(capacity)
    holdings = []
    for index in range(draw(st.integers(0, 6))):
        node = draw(st.sampled_from(sorted(free)))
        gpus = draw(st.integers(1, 8))
        if free[node] < gpus:
            continue
        free[node] -= gpus
        holdings.append(
            Holding(
                f"h{index}",
                draw(st.sampled_from(["o1", "o2"])),
                "p",
                draw(st.sampled_from(PRIORITIES)),
                draw(st.booleans()),
                NOW - timedelta(seconds=draw(st.integers(1, 1000))),
                "c",
                "gpu",
                gpus,
                0,
                {node: gpus},
            )
        )
    candidates = []
    for index in range(draw(st.integers(1, 6))):
        nodes = draw(st.integers(1, 3))
        per_node = draw(st.sampled_from([1, 2, 4, 8]))
        candidates.append(
            Candidate(
                f"q{index}",
                draw(st.sampled_from(["o1", "o2"])),
                "p",
                draw(st.sampled_from(PRIORITIES)),
                NOW - timedelta(seconds=index),
                Needs(nodes, nodes * per_node, "gpu", 0),
            )
        )
    cluster = ClusterState("c", len(capacity), {"gpu": sum(free.values())}, 0, {"gpu": free})
    return Snapshot(candidates, [cluster], {}, {}, NOW, 3600.0, holdings), capacity


@settings(max_examples=300, deadline=None)
@given(snapshots())
def test_no_over_commit_no_illegal_victim_no_cycle(case: tuple[Snapshot, dict[str, int]]) -> None:
    snapshot, capacity = case
    free_before = dict(snapshot.clusters[0].node_free["gpu"])
    holdings = {h.run_id: h for h in snapshot.holdings}
    priorities = {c.run_id: c.priority for c in snapshot.candidates}
    plan = plan_admissions(snapshot)
    used = dict.fromkeys(capacity, 0)
    for node, room in free_before.items():
        used[node] = capacity[node] - room
    for candidate, grant in plan.admitted:
        assert len(grant.placement) == candidate.needs.nodes  # distinct nodes
        for node, gpus in grant.placement.items():
            assert gpus == candidate.needs.per_node
            used[node] += gpus
    assert all(used[node] <= capacity[node] for node in capacity)  # no over-commit
    victims = set()
    for preemption in plan.preemptions:
        for victim in preemption.victims:
            held = holdings[victim.run_id]
            assert held.preemptible
            assert PRIORITY_RANK[held.priority] < PRIORITY_RANK[priorities[preemption.run_id]]
            assert victim.run_id not in victims  # one preemptor per victim
            victims.add(victim.run_id)
    # No cycle: every preemption edge goes strictly down in priority, so none can close a loop.
    preemptors = {p.run_id for p in plan.preemptions}
    assert not preemptors & victims


@st.composite
def workloads(draw: st.DrawFn) -> list[tuple[str, str, bool, int, int]]:
    """Runs to submit over time: (org, priority, preemptible, nodes, gpus per node)."""
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(["o1", "o2", "o3"]),
                st.sampled_from(PRIORITIES),
                st.booleans(),
                st.integers(1, 2),
                st.sampled_from([2, 4, 8]),
            ),
            min_size=1,
            max_size=12,
        )
    )


@settings(max_examples=150, deadline=None)
@given(workloads(), st.integers(2, 6))
def test_over_many_passes_preemption_never_forms_a_cycle(
    runs: list[tuple[str, str, bool, int, int]], passes_per_run: int
) -> None:
    """Passes in a row: victims leave at once and queue again, preemptors get admitted later.
    Every preemption edge is recorded; the graph of who preempted whom has no cycle, and no
    node is ever over-committed."""
    capacity = {"n0": 8, "n1": 8, "n2": 8}
    queue: dict[str, Candidate] = {}
    running: dict[str, Holding] = {}
    flags: dict[str, bool] = {}
    edges: set[tuple[str, str]] = set()
    now = NOW
    for index, (org, priority, preemptible, nodes, per_node) in enumerate(runs):
        name = f"r{index}"
        needs = Needs(nodes, nodes * per_node, "gpu", 0)
        queue[name] = Candidate(name, org, "p", priority, now, needs)
        flags[name] = preemptible
        for _ in range(passes_per_run):
            now += timedelta(seconds=10)
            free = dict(capacity)
            for held in running.values():
                for node, gpus in held.placement.items():
                    free[node] -= gpus
            assert all(room >= 0 for room in free.values())  # never over-committed
            cluster = ClusterState("c", 3, {"gpu": sum(free.values())}, 0, {"gpu": free})
            snapshot = Snapshot(list(queue.values()), [cluster], {}, {}, now, 3600.0,
                                list(running.values()))  # fmt: skip
            plan = plan_admissions(snapshot)
            for preemption in plan.preemptions:
                for victim in preemption.victims:
                    edges.add((preemption.run_id, victim.run_id))
                    gone = running.pop(victim.run_id)  # stopped: back to the queue
                    queue[gone.run_id] = Candidate(
                        gone.run_id, gone.org_id, "p", gone.priority, now,
                        Needs(len(gone.placement), gone.gpus, "gpu", 0),
                    )  # fmt: skip
            for candidate, grant in plan.admitted:
                del queue[candidate.run_id]
                running[candidate.run_id] = Holding(
                    candidate.run_id, candidate.org_id, "p", candidate.priority,
                    flags[candidate.run_id], now, "c", "gpu", grant.gpus, 0,
                    dict(grant.placement),
                )  # fmt: skip
    assert not _has_cycle(edges)
    for _, victim_id in edges:
        assert flags[victim_id]


def _has_cycle(edges: set[tuple[str, str]]) -> bool:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(node: str) -> bool:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1 or (state.get(nxt) is None and visit(nxt)):
                return True
        state[node] = 2
        return False

    return any(state.get(node) is None and visit(node) for node in list(graph))

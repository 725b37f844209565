"""The planner on snapshots: node-shaped gangs and preemption (issue 20), no database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from core.scheduling.planner import (
    Candidate,
    ClusterState,
    Needs,
    Plan,
    QueueReason,
    Snapshot,
    fits_anywhere,
    plan_admissions,
)
from core.scheduling.preemption import Holding

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def cluster(name: str = "c", gpu_type: str = "h100", **nodes: int) -> ClusterState:
    free = {gpu_type: sum(nodes.values())}
    return ClusterState(name, len(nodes), free, 0, {gpu_type: dict(nodes)})


def run(run_id: str, nodes: int, per_node: int, priority: str = "normal", org: str = "o1",
        age: float = 60) -> Candidate:  # fmt: skip
    needs = Needs(nodes, nodes * per_node, "h100", 0)
    return Candidate(run_id, org, "p", priority, NOW - timedelta(seconds=age), needs)


def holding(run_id: str, placement: dict[str, int], priority: str = "low", org: str = "o1",
            preemptible: bool = True, age: float = 600) -> Holding:  # fmt: skip
    return Holding(
        run_id, org, "p", priority, preemptible, NOW - timedelta(seconds=age), "c", "h100",
        sum(placement.values()), 0, placement,
    )  # fmt: skip


def plan(clusters: list[ClusterState], candidates: list[Candidate],
         holdings: Sequence[Holding] = ()) -> Plan:  # fmt: skip
    snapshot = Snapshot(candidates, clusters, {}, {}, NOW, 3600.0, holdings)
    return plan_admissions(snapshot)


def test_a_gang_of_two_eights_does_not_fit_on_four_nodes_with_four_free_each() -> None:
    """The issue's finding: 16 GPUs free in total, but no node holds 8."""
    result = plan([cluster(a=4, b=4, c=4, d=4)], [run("r", 2, 8)])
    assert result.admitted == []
    blocker = result.blocked["r"]
    assert blocker.reason is QueueReason.NO_CAPACITY
    assert blocker.detail == "needs 2 x 8 h100 on one cluster, best fit 2 x 4"


def test_the_queue_answer_names_the_best_fit_node_by_node() -> None:
    result = plan([cluster(a=8, b=4, c=4, d=2)], [run("r", 2, 8)])
    detail = result.blocked["r"].detail
    assert detail == "needs 2 x 8 h100 on one cluster, best fit 1 x 8 + 1 x 4"


def test_a_gang_is_placed_on_distinct_nodes_with_the_least_room_that_fits() -> None:
    result = plan([cluster(a=8, b=16, c=8, d=4)], [run("r", 2, 8)])
    ((_, grant),) = result.admitted
    assert grant.placement == {"a": 8, "c": 8}


def test_unschedulable_is_judged_by_node_shape() -> None:
    why = fits_anywhere(Needs(2, 16, "h100", 0), [cluster(a=4, b=4, c=4, d=4)])
    assert why == "needs 2 x 8 h100 on one cluster; the best fit any cluster has is 2 x 4"
    assert fits_anywhere(Needs(2, 8, "h100", 0), [cluster(a=4, b=4, c=4, d=4)]) is None


def test_a_high_priority_run_preempts_the_fewest_then_newest_preemptible_runs() -> None:
    full = cluster(a=0, b=0)
    victims = [
        holding("old", {"a": 8}, age=900),
        holding("new", {"b": 8}, age=100),
        holding("half1", {"a": 4}, age=50),  # never enough alone
    ]
    full.node_free["h100"] = {"a": 0, "b": 0}
    result = plan([full], [run("urgent", 1, 8, "high")], victims)
    (preemption,) = result.preemptions
    assert preemption.run_id == "urgent"
    assert [v.run_id for v in preemption.victims] == ["new"]
    assert result.blocked["urgent"].reason is QueueReason.PREEMPTING


def test_never_a_non_preemptible_or_equal_priority_victim() -> None:
    full = cluster(a=0)
    held = [
        holding("pinned", {"a": 8}, preemptible=False),
        holding("peer", {"a": 8}, priority="high"),
    ]
    result = plan([full], [run("urgent", 1, 8, "high")], held)
    assert result.preemptions == []
    assert result.blocked["urgent"].reason is QueueReason.NO_CAPACITY


def test_own_org_first_and_other_orgs_only_above_their_fair_share() -> None:
    # 16 GPUs, two orgs with demand: a fair share is 8 each.
    full = cluster(a=0, b=0)
    mine = holding("mine", {"a": 8}, org="o1", age=900)
    theirs = holding("theirs", {"b": 8}, org="o2", age=10)
    result = plan([full], [run("urgent", 1, 8, "high", org="o1")], [mine, theirs])
    (preemption,) = result.preemptions
    assert [v.run_id for v in preemption.victims] == ["mine"]
    # o2 holds exactly its share (8 of 16): its run is not a victim for o1's gang of two.
    result = plan([full], [run("urgent", 2, 8, "high", org="o1")], [mine, theirs])
    assert result.preemptions == []


def test_another_org_above_its_fair_share_may_be_preempted() -> None:
    full = cluster(a=0, b=0)
    held = [holding("t1", {"a": 8}, org="o2"), holding("t2", {"b": 8}, org="o2")]
    result = plan([full], [run("urgent", 1, 8, "high", org="o1")], held)
    (preemption,) = result.preemptions
    assert len(preemption.victims) == 1


def test_a_preemptor_waiting_for_its_victims_picks_no_more_and_holds_the_free_part() -> None:
    free = cluster(a=4, b=0)
    pending = Holding(
        "v", "o1", "p", "low", True, NOW, "c", "h100", 4, 0, {"a": 4}, preempted_by="urgent"
    )
    other = holding("w", {"b": 8}, preemptible=False)
    result = plan([free], [run("urgent", 1, 8, "high"), run("small", 1, 4)], [pending, other])
    assert result.preemptions == []
    assert result.blocked["urgent"].reason is QueueReason.PREEMPTING
    # The 4 free GPUs on node a are held for the preemptor, not given to the smaller run.
    assert "small" in result.blocked

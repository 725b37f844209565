"""One admission pass with preemption, on a snapshot (no database): 10,000 queued runs and
2,000 running ones (4 GPUs each, two per node) on 1,000 nodes of 8 GPUs, every GPU held; half
the running runs preemptible, priorities low or normal at random; the queue mixes priorities
(half low, 40% normal, 10% high), gang shapes (1 x 4, 1 x 8, 2 x 8, 4 x 8) and 100 orgs.

    PYTHONPATH=$PWD python bench/preemption_bench.py

Target (issue 20): at most 1 s per pass. Prints wall and process CPU time (five seeds): on a
shared machine the wall time includes waiting for a core.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from core.scheduling.planner import Candidate, ClusterState, Needs, Snapshot, plan_admissions
from core.scheduling.preemption import Holding

NOW = datetime(2026, 12, 4, tzinfo=UTC)
NODES, PER_NODE, RUNNING, QUEUED, ORGS = 1000, 8, 2000, 10_000, 100


def snapshot(seed: int) -> Snapshot:
    rng = random.Random(seed)
    holdings = [
        Holding(
            f"held{i}",
            f"org{rng.randrange(ORGS)}",
            "p",
            rng.choice(["low", "normal"]),
            rng.random() < 0.5,
            NOW - timedelta(seconds=rng.randrange(86_400)),
            "c",
            "h100",
            4,
            0,
            {f"n{i // 2}": 4},
        )
        for i in range(RUNNING)
    ]
    shapes = [(1, 4), (1, 8), (2, 8), (4, 8)]
    candidates = []
    for i in range(QUEUED):
        nodes, per_node = rng.choice(shapes)
        priority = rng.choices(["low", "normal", "high"], [5, 4, 1])[0]
        needs = Needs(nodes, nodes * per_node, "h100", 0)
        org = f"org{rng.randrange(ORGS)}"
        queued = NOW - timedelta(seconds=rng.randrange(3000))
        candidates.append(Candidate(f"q{i}", org, "p", priority, queued, needs))
    free = {f"n{i}": 0 for i in range(NODES)}
    cluster = ClusterState("c", NODES, {"h100": 0}, None, {"h100": free})
    return Snapshot(candidates, [cluster], {}, {}, NOW, 3600.0, holdings)


def main() -> None:
    times, cpu, preemptions, victims, gangs = [], [], 0, 0, 0
    for seed in range(5):
        state = snapshot(seed)
        started, cpu_started = time.perf_counter(), time.process_time()
        plan = plan_admissions(state)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        preemptions = len(plan.preemptions)
        victims = sum(len(p.victims) for p in plan.preemptions)
        gangs = sum(1 for p in plan.preemptions if len(p.victims) > 1)
    print(
        f"admission pass with preemption: {QUEUED} queued, {RUNNING} running, {NODES} nodes: "
        f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
        f"(CPU median {statistics.median(cpu) * 1000:.0f} ms, max {max(cpu) * 1000:.0f} ms) "
        f"({preemptions} preemptions, {gangs} of them of several victims, {victims} victims "
        "in the last pass)"
    )


if __name__ == "__main__":
    main()

"""CPU per request of the API before and after a change, side by side. Prints, never asserts.

A refactoring step must leave the API no slower (issue 16: CPU per request within 5%). Measured
one after the other, two runs of `bench/api_bench.py` on this shared machine differ by 10-30%
with the load; here both versions serve the same seeded database at the same time, and each
round drives the same scenario against A, then B, then B, then A (so drift in the load falls
on both alike). CPU per request is the server process's own CPU time over the requests `wrk`
completed (`/proc`), far steadier than req/s.

    git worktree add --detach /tmp/before <commit>       # the "before" source tree
    python -m bench.ab_bench --before /tmp/before         # ~4 min at the defaults
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench import api_bench, loadgen, seed, servers
from bench.api_bench import FEED, Scenario
from bench.servers import Served

SCENARIOS = (
    "POST /v1/runs",
    "GET /v1/runs/{id}",
    "GET /v1/runs/{id} 304",
    "GET /v1/runs?limit=50",
    FEED,
)


def _cpu_per_request(scenario: Scenario, server: Served, seconds: int, connections: int) -> float:
    before = server.cpu_seconds()
    result = loadgen.run_wrk(server.port, scenario.requests, seconds, connections)
    return (server.cpu_seconds() - before) * 1e6 / max(result.requests, 1)


def _env(seeded: seed.Seeded, tree: Path) -> dict[str, str]:
    env = api_bench.api_env(seeded)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "sdk")])
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the earlier source tree")
    parser.add_argument("--runs", type=int, default=100_000, help="stored runs to seed")
    parser.add_argument("--rounds", type=int, default=4, help="A-B-B-A rounds per scenario")
    parser.add_argument("--seconds", type=int, default=3, help="length of one wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", help="comma-separated endpoint names (default: all five)")
    args = parser.parse_args()
    if not loadgen.wrk_available():
        raise SystemExit("the benchmark needs `wrk` on PATH (Debian/Ubuntu: apt-get install wrk)")
    seeded = seed.seed(args.runs)
    wanted = args.only.split(",") if args.only else SCENARIOS
    scenarios = [s for s in api_bench.make_scenarios(seeded) if s.name in wanted]
    cpu: dict[str, dict[str, list[float]]] = {s.name: {"A": [], "B": []} for s in scenarios}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="tp-ab-") as tmp:
        logs = Path(tmp)
        before_env, after_env = _env(seeded, args.before.resolve()), _env(seeded, servers.ROOT)
        with (
            servers.serve("api.main:app", "/readyz", before_env, logs / "a.log", args.before) as a,
            servers.serve("api.main:app", "/readyz", after_env, logs / "b.log") as b,
        ):
            for number in range(args.rounds + 1):  # round 0 warms caches and pools
                for scenario in scenarios:
                    if scenario.name == FEED:
                        scenario.requests = api_bench.feed_requests(seeded, 10)
                    for label, server in (("A", a), ("B", b), ("B", b), ("A", a)):
                        took = _cpu_per_request(scenario, server, args.seconds, args.connections)
                        if number:
                            cpu[scenario.name][label].append(took)
                load.append(os.getloadavg()[0])
    print(f"\nCPU per request, median of {2 * args.rounds} wrk runs of {args.seconds} s each")
    print(f"A = {args.before} (before), B = {servers.ROOT} (after); {args.runs:,} runs stored")
    print(f"load average (1 min) during the runs: {min(load):.1f}-{max(load):.1f}")
    print(f"  {'endpoint':<30}{'A us':>8}{'B us':>8}{'B / A':>8}   spread A / B")
    for name, by in cpu.items():
        a_us, b_us = statistics.median(by["A"]), statistics.median(by["B"])
        spread = [100 * (max(v) - min(v)) / statistics.median(v) for v in (by["A"], by["B"])]
        print(
            f"  {name:<30}{a_us:8.0f}{b_us:8.0f}{b_us / a_us:8.3f}   "
            f"{spread[0]:.0f}% / {spread[1]:.0f}%"
        )


if __name__ == "__main__":
    main()

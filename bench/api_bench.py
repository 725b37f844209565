"""The v1 runs API under load on PostgreSQL, beside a bare FastAPI yardstick. Prints, never asserts.

For each stored-run count (default 100k, then 1M) it seeds a fresh `trainport_bench` database
(bench/seed.py), serves the real app and the bare app with uvicorn (one worker process each),
and then:

1. throughput: `wrk` drives each scenario for `--seconds`, in `--rounds` rounds; each round
   measures the bare route first and every ratio divides by that round's bare figure. The
   server's CPU time per request is read from /proc: it is far less disturbed by other load on
   the machine than req/s is;
2. latency: `--latency-requests` sequential requests on one connection for the list, the change
   feed and the filtered lists; the p99 targets are judged on these;
3. plans: EXPLAIN (ANALYZE) of the list, filter and feed SQL, to show they are index scans.

    python -m bench.api_bench                                      # 100k and 1M runs, ~6 min
    python -m bench.api_bench --runs 100000 --rounds 1 --seconds 2    # a quick look
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import loadgen, plans, seed, servers
from bench.loadgen import Latency, Request, Throughput
from bench.servers import Served

BARE = "bare FastAPI GET /bare (async def)"
READ_FLOOR = "floor: bare + 1 SELECT by id (asyncpg)"
CREATE_FLOOR = "floor: bare + the create statement"
TARGET_RATIO = {"POST /v1/runs": 0.30, "GET /v1/runs/{id}": 0.50, "GET /v1/runs/{id} 304": 0.50}
TARGET_P99_MS = {"GET /v1/runs?limit=50": 20.0, "GET /v1/runs?changed_since=N": 10.0}
FEED = "GET /v1/runs?changed_since=N"
CREATE_BODY = {
    "image": "ghcr.io/acme/trainer:1.4",
    "command": ["python", "train.py", "--config", "configs/base.yaml"],
    "compute": {"nodes": 2, "gpus_per_node": 8, "gpu_type": "h100", "memory": "512Gi"},
    "scheduling": {"max_duration": "12h", "max_retries": 2},
    "labels": {"team": "nlp", "exp": "bench"},
}


@dataclass
class Scenario:
    name: str
    requests: list[Request]
    server: str = "api"
    rounds: list[Throughput] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


@dataclass
class SizeReport:
    runs: int
    measured_runs: int
    seed_seconds: float
    feed_lag: int
    throughput: dict[str, dict[str, float]]
    latency: dict[str, dict[str, Any]]
    plans: list[dict[str, object]]


def _query(url: str, sql: str, params: list[str]) -> list[tuple[str, int]]:
    with psycopg.connect(seed.dsn(url)) as conn:
        return [(str(a), int(b)) for a, b in conn.execute(sql, params).fetchall()]


def _head(url: str) -> int:
    rows = _query(url, "SELECT name, value FROM version_counters WHERE name = 'runs'", [])
    return rows[0][1] if rows else 0


def _auth(seeded: seed.Seeded) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.api_key}"}


def make_scenarios(seeded: seed.Seeded) -> list[Scenario]:
    sample = _query(
        seeded.database_url,
        "SELECT id, resource_version FROM runs WHERE org_id = %s AND deleted_at IS NULL "
        "ORDER BY random() LIMIT 1000",
        [seeded.org_id],
    )
    auth = _auth(seeded)
    post = {**auth, "Content-Type": "application/json"}
    fresh = [{**auth, "If-None-Match": f'"{version}"'} for _, version in sample]
    floor_create = f"/floor/create/{seeded.org_id}/{seeded.project_ids[0]}"
    return [
        Scenario(BARE, [Request("GET", "/bare")], server="bare"),
        Scenario("bare FastAPI, def route (threadpool)", [Request("GET", "/bare-sync")], "bare"),
        Scenario(READ_FLOOR, [Request("GET", f"/floor/read/{i}") for i, _ in sample], "bare"),
        Scenario(CREATE_FLOOR, [Request("POST", floor_create)], "bare"),
        Scenario("POST /v1/runs", [Request("POST", "/v1/runs", post, json.dumps(CREATE_BODY))]),
        Scenario("GET /v1/runs/{id}", [Request("GET", f"/v1/runs/{i}", auth) for i, _ in sample]),
        Scenario(
            "GET /v1/runs/{id} 304",
            [Request("GET", f"/v1/runs/{i}", h) for (i, _), h in zip(sample, fresh, strict=True)],
        ),
        Scenario("GET /v1/runs?limit=50", [Request("GET", "/v1/runs?limit=50", auth)]),
        Scenario(FEED, []),  # N is read from the database just before each run
    ]


def feed_requests(seeded: seed.Seeded, lag: int) -> list[Request]:
    after = _head(seeded.database_url) - lag
    return [Request("GET", f"/v1/runs?changed_since={after}", _auth(seeded))]


def _measure(scenario: Scenario, server: Served, args: argparse.Namespace, warmup: bool) -> None:
    secs = 1 if warmup else args.seconds
    cpu_before = server.cpu_seconds()
    result = loadgen.run_wrk(server.port, scenario.requests, secs, args.connections)
    cpu_us = (server.cpu_seconds() - cpu_before) * 1e6 / max(result.requests, 1)
    if warmup:
        return
    scenario.rounds.append(result)
    scenario.cpu_us.append(cpu_us)
    print(
        f"  {scenario.name:<38} {result.rps:7.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
        f"p99 {result.p99_ms:6.2f} ms  cpu {cpu_us:5.0f} us/req  "
        f"statuses {result.statuses} errors {result.errors}",
        flush=True,
    )


def _throughput(
    args: argparse.Namespace,
    seeded: seed.Seeded,
    scenarios: list[Scenario],
    servers_by_name: dict[str, Served],
) -> None:
    for number in range(args.rounds + 1):  # round 0 warms caches and pools
        if number:
            print(f" round {number}/{args.rounds}", flush=True)
        for scenario in scenarios:
            if scenario.name == FEED:
                scenario.requests = feed_requests(seeded, args.feed_lag)
            _measure(scenario, servers_by_name[scenario.server], args, warmup=number == 0)
        if number:
            bare_rps = scenarios[0].rounds[-1].rps
            for scenario in scenarios:
                scenario.ratios.append(scenario.rounds[-1].rps / bare_rps)


def _latencies(args: argparse.Namespace, seeded: seed.Seeded, port: int) -> dict[str, Latency]:
    auth = _auth(seeded)
    paths = {
        "GET /v1/runs?limit=50": "/v1/runs?limit=50",
        "GET /v1/runs?limit=50&status=running": "/v1/runs?limit=50&status=running",
        "GET /v1/runs?limit=50&status=failed": "/v1/runs?limit=50&status=failed",
        "GET /v1/runs?limit=50&labels=team=nlp": "/v1/runs?limit=50&labels=team%3Dnlp",
        "GET /v1/runs?limit=50&project=vision": "/v1/runs?limit=50&project=vision",
    }
    cases = {name: [Request("GET", path, auth)] for name, path in paths.items()}
    cases[FEED] = feed_requests(seeded, args.feed_lag)
    out: dict[str, Latency] = {}
    for name, requests in cases.items():  # targets: `--rounds` batches; filters: half of one
        if name in TARGET_P99_MS:
            out[name] = loadgen.sequential(port, requests, args.latency_requests, args.rounds)
        else:
            out[name] = loadgen.sequential(port, requests, max(args.latency_requests // 2, 1))
    return out


def _summary(scenarios: list[Scenario]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in scenarios:
        rps = [r.rps for r in s.rounds]
        out[s.name] = {
            "rps": statistics.median(rps),
            "rps_spread_pct": 100 * (max(rps) - min(rps)) / statistics.median(rps),
            "p50_ms": statistics.median(r.p50_ms for r in s.rounds),
            "p99_ms": statistics.median(r.p99_ms for r in s.rounds),
            "cpu_us_per_request": statistics.median(s.cpu_us),
            "ratio": statistics.median(s.ratios),
        }
    return out


def api_env(seeded: seed.Seeded) -> dict[str, str]:
    """The API's environment for a benchmark: production mode on the seeded database."""
    return {
        "TRAINPORT_DATABASE_URL": seeded.database_url,
        "TRAINPORT_ENVIRONMENT": "production",
        "TRAINPORT_LOG_LEVEL": "WARNING",
        "TRAINPORT_SECRET_KEY": secrets.token_urlsafe(32),  # production refuses the default
        # The limiter runs (its cost is in every figure) but never refuses the load generator;
        # bench/rate_limit_bench.py measures it alone.
        "TRAINPORT_RATE_LIMIT_PER_KEY": "10000000/second",
        "TRAINPORT_RATE_LIMIT_PER_ORG": "10000000/second",
        "TRAINPORT_MAX_WAITING_RUNS_PER_ORG": "100000000",
        "TRAINPORT_SECRETS_KEY": secrets.token_urlsafe(32),  # and needs a run-secrets key
    }


def bench_size(args: argparse.Namespace, runs: int, bare: Served, logs: Path) -> SizeReport:
    print(f"\n== seeding {runs:,} runs ==", flush=True)
    seeded = seed.seed(runs)
    print(f"  seeded in {seeded.seconds:.1f} s; {seeded.measured_runs:,} in the measured org")
    env = api_env(seeded)
    scenarios = make_scenarios(seeded)
    with servers.serve("api.main:app", "/readyz", env, logs / f"api-{runs}.log") as api:
        _throughput(args, seeded, scenarios, {"api": api, "bare": bare})
        print("  sequential latency ...", flush=True)
        latencies = _latencies(args, seeded, api.port)
    head = _head(seeded.database_url)
    found = plans.explain_all(
        seeded.database_url,
        seeded.org_id,
        seeded.project_ids[1],
        seeded.other_org_id,
        (head - args.feed_lag, head),
    )
    return SizeReport(
        runs=runs,
        measured_runs=seeded.measured_runs,
        seed_seconds=seeded.seconds,
        feed_lag=args.feed_lag,
        throughput=_summary(scenarios),
        latency={k: asdict(v) for k, v in latencies.items()},
        plans=[asdict(p) | {"uses_indexes": p.uses_indexes} for p in found],
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_report(report: SizeReport, args: argparse.Namespace) -> None:
    print(
        f"\n== {report.runs:,} runs stored ({report.measured_runs:,} in the measured org, "
        f"seeded in {report.seed_seconds:.0f} s) =="
    )
    print(
        f"throughput: wrk -t1 -c{args.connections}, median of {args.rounds} x "
        f"{args.seconds:g} s; ratio = req/s / bare req/s of the same round; "
        "spread = (max - min) / median req/s"
    )
    print(
        f"  {'endpoint':<38}{'req/s':>7}{'spread':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'cpu us':>8}{'vs bare':>9}  target"
    )
    for name, t in report.throughput.items():
        target = TARGET_RATIO.get(name)
        verdict = f">= {target:.2f} {_verdict(t['ratio'] >= target)}" if target else ""
        print(
            f"  {name:<38}{t['rps']:7.0f}{t['rps_spread_pct']:7.0f}%{t['p50_ms']:8.2f}"
            f"{t['p99_ms']:8.2f}{t['cpu_us_per_request']:8.0f}{t['ratio']:9.3f}  {verdict}"
        )
    print(
        f"latency: sequential requests on one keep-alive connection; list and feed: {args.rounds} "
        f"batches of {args.latency_requests}, p99 over all (each batch's p99); "
        f"feed: changed_since = head - {report.feed_lag}"
    )
    for name, lat in report.latency.items():
        limit = TARGET_P99_MS.get(name)
        verdict = f"p99 <= {limit:g} ms {_verdict(lat['p99_ms'] <= limit)}" if limit else ""
        batches = "/".join(f"{x:.1f}" for x in lat["batch_p99_ms"])
        print(
            f"  {name:<38} n={lat['count']:<5} p50 {lat['p50_ms']:6.2f} ms  "
            f"p99 {lat['p99_ms']:6.2f} ms ({batches})  {verdict}"
        )
    print("query plans: EXPLAIN (ANALYZE) of the repository's SQL; scan nodes and execution time")
    for plan in report.plans:
        kind = "index" if plan["uses_indexes"] else "SEQ SCAN"
        scans = " | ".join(str(s) for s in plan["scans"])  # type: ignore[attr-defined]
        print(f"  {plan['name']:<28} {kind:<8} {plan['execution_ms']:7.3f} ms  {scans}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="100000,1000000", help="comma-separated run counts")
    parser.add_argument("--seconds", type=int, default=3, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scenario (median)")
    parser.add_argument("--connections", type=int, default=16, help="wrk keep-alive connections")
    parser.add_argument("--latency-requests", type=int, default=1000)
    parser.add_argument("--feed-lag", type=int, default=10, help="changes behind the head")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not loadgen.wrk_available():
        raise SystemExit("the benchmark needs `wrk` on PATH (Debian/Ubuntu: apt-get install wrk)")
    started = time.perf_counter()
    reports: list[SizeReport] = []
    with tempfile.TemporaryDirectory(prefix="tp-bench-") as tmp:
        logs = Path(tmp)
        floor = {"TRAINPORT_BENCH_FLOOR_DB": seed.database_url()}  # re-made for each size
        with servers.serve("bench.bare_app:app", "/bare", floor, logs / "bare.log") as bare:
            for runs in (int(x) for x in args.runs.split(",")):
                reports.append(bench_size(args, runs, bare, logs))
    for report in reports:
        print_report(report, args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n")


if __name__ == "__main__":
    main()

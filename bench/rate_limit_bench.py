"""The rate limiter's cost per request, next to a `GET /v1/runs/{id}`. Prints, never asserts.

Target (issue 12): the limiter adds at most 5% to a `GET /v1/runs/{id}`.

1. In process: one limiter check (`RateLimiter.hit`, what the edge middleware does per request
   with a credential; every authenticated route, `GET /v1/runs/{id}` included, adds one more
   for the org), on the event loop, with memory storage (embedded mode) and with Redis storage
   (production).
2. End to end, A/B: the real API under uvicorn on PostgreSQL, limits on (memory, then Redis)
   and off (`TRAINPORT_RATE_LIMIT_ENABLED=false`), in alternating rounds of sequential
   `GET /v1/runs/{id}` on one keep-alive connection; p50 latency and the server's CPU time per
   request (from /proc, the steadier figure on a shared machine).

    python -m bench.rate_limit_bench                       # ~1 min
    python -m bench.rate_limit_bench --requests 3000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from bench import loadgen, servers
from bench.loadgen import Request
from core import migrate
from core.db import build_engine, make_sessionmaker, session_scope
from core.ratelimit import RateLimiter, credential_id
from core.settings import Settings
from core.tenants.service import bootstrap

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DATABASE = "trainport_bench_ratelimit"
REDIS_URL = "redis://127.0.0.1:6379/0"
GENEROUS = "10000000/second"  # never refuses the benchmark, but every check still runs
TARGET_PCT = 5.0


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def fresh_database() -> str:
    with psycopg.connect(_dsn(ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    url = make_url(ADMIN_URL).set(database=DATABASE).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


def make_org(url: str) -> str:
    engine = build_engine(Settings(database_url=url))
    with session_scope(make_sessionmaker(engine)) as session:
        secret = bootstrap(session, "bench-ratelimit").secret
    engine.dispose()
    return secret


async def _check_cost(limiter: RateLimiter, count: int, sync_every: int) -> float:
    """Microseconds per edge check: the credential's digest and one per-key hit.

    With Redis, one synchronisation per `sync_every` checks is included: what a process
    serving 1,000 requests a second does with the default 50 ms interval (`sync_every` 50).
    """
    secret = "tp_" + secrets.token_hex(16)
    await limiter.hit(limiter.per_key, credential_id(secret))  # connect / warm up
    await limiter.flush()
    started = time.perf_counter()
    for done in range(1, count + 1):
        await limiter.hit(limiter.per_key, credential_id(secret))
        if done % sync_every == 0:
            await limiter.flush()
    return (time.perf_counter() - started) / count * 1e6


def in_process(count: int) -> dict[str, float]:
    variants: dict[str, dict[str, Any]] = {
        "memory": {},
        "redis": {"rate_limit_storage_url": REDIS_URL},
        "redis, exact (sync 0)": {
            "rate_limit_storage_url": REDIS_URL,
            "rate_limit_sync_seconds": 0,
        },
    }
    costs = {}
    for name, extra in variants.items():
        settings = Settings(rate_limit_per_key=GENEROUS, **extra)
        costs[name] = asyncio.run(_check_cost(RateLimiter(settings), count, sync_every=50))
    return costs


def create_runs(port: int, key: str, count: int) -> list[str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"image": "python:3.11-slim", "command": ["python", "-c", "pass"]})
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    ids = []
    for _ in range(count):
        conn.request("POST", "/v1/runs", body=body, headers=headers)
        response = conn.getresponse()
        ids.append(json.loads(response.read())["id"])
    conn.close()
    return ids


def measure(served: servers.Served, requests: list[Request], count: int) -> tuple[float, float]:
    """(p50 ms, server CPU us per request) of `count` sequential requests."""
    cpu = served.cpu_seconds()
    latency = loadgen.sequential(served.port, requests, count)
    return latency.p50_ms, (served.cpu_seconds() - cpu) / count * 1e6


def end_to_end(
    args: argparse.Namespace, url: str, key: str, logs: Path
) -> dict[str, list[tuple[float, float]]]:
    base = {
        "TRAINPORT_DATABASE_URL": url,
        "TRAINPORT_ENVIRONMENT": "production",
        "TRAINPORT_LOG_LEVEL": "WARNING",
        "TRAINPORT_SECRET_KEY": secrets.token_urlsafe(32),
        "TRAINPORT_SECRETS_KEY": secrets.token_urlsafe(32),  # production needs a run-secrets key
        "TRAINPORT_RATE_LIMIT_PER_KEY": GENEROUS,
        "TRAINPORT_RATE_LIMIT_PER_ORG": GENEROUS,
    }
    variants = {
        "off": {"TRAINPORT_RATE_LIMIT_ENABLED": "false"},
        "memory": {},
        "redis": {"TRAINPORT_RATE_LIMIT_STORAGE_URL": REDIS_URL},
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    with (
        servers.serve("api.main:app", "/readyz", base | variants["off"], logs / "off.log") as off,
        servers.serve(
            "api.main:app", "/readyz", base | variants["memory"], logs / "mem.log"
        ) as mem,
        servers.serve(
            "api.main:app", "/readyz", base | variants["redis"], logs / "redis.log"
        ) as red,
    ):
        served = {"off": off, "memory": mem, "redis": red}
        ids = create_runs(off.port, key, args.runs)
        headers = {"Authorization": f"Bearer {key}"}
        requests = [Request("GET", f"/v1/runs/{run_id}", headers) for run_id in ids]
        for name in served:  # warm-up: pools, caches, the limiter's connection
            measure(served[name], requests, 300)
        for _ in range(args.rounds):
            for name in served:  # alternating, so drift in the machine's speed hits all three
                results[name].append(measure(served[name], requests, args.requests))
    return results


def report(
    costs: dict[str, float], results: dict[str, list[tuple[float, float]]], args: argparse.Namespace
) -> None:
    print(
        "in process, on the event loop: the edge's per-request check (digest + per-key hit; "
        "every authenticated route adds a per-org hit); Redis syncs once per 50 checks:"
    )
    for name, us in costs.items():
        print(f"  {name:<22} {us:7.1f} us per check")
    p50 = {n: statistics.median(r[0] for r in rounds) for n, rounds in results.items()}
    cpu = {n: statistics.median(r[1] for r in rounds) for n, rounds in results.items()}
    print(
        f"\nend to end, GET /v1/runs/{{id}}: {args.rounds} alternating rounds x "
        f"{args.requests} sequential requests; medians of rounds"
    )
    print(f"  {'limits':<8}{'p50 ms':>8}{'cpu us':>8}{'cpu vs off':>12}{'p50 vs off':>12}")
    for name in results:
        cpu_pct = 100 * (cpu[name] - cpu["off"]) / cpu["off"]
        p50_pct = 100 * (p50[name] - p50["off"]) / p50["off"]
        print(f"  {name:<8}{p50[name]:8.3f}{cpu[name]:8.0f}{cpu_pct:+11.1f}%{p50_pct:+11.1f}%")
    for name in costs:  # a GET is counted twice: against its key and against its org
        share = 100 * 2 * costs[name] / cpu["off"]
        verdict = "met" if share <= TARGET_PCT else "MISSED"
        print(
            f"  {name}: two checks (key + org) = {share:.1f}% of a GET's server CPU "
            f"(target <= {TARGET_PCT:.0f}%: {verdict})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=20_000, help="in-process checks")
    parser.add_argument("--runs", type=int, default=500, help="runs to read, round robin")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    costs = in_process(args.checks)
    url = fresh_database()
    key = make_org(url)
    with tempfile.TemporaryDirectory() as logs:
        results = end_to_end(args, url, key, Path(logs))
    report(costs, results, args)


if __name__ == "__main__":
    main()

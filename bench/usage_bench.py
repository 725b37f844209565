"""`GET /v1/orgs/{id}/usage` over a year of runs: p50 / p99 for an org of 100k runs.

Seeds a database of its own (`trainport_usage_bench`, dropped and recreated) with `bench.seed`'s
runs (90% in the measured org), then one attempt per run spread evenly over the last 365 days
(1-8 GPUs, H100 or A100, 10 minutes to 12 hours; the newest 50 still running), then rolls the
ended attempts up with the code `close_attempt` runs (`core.usage.rollup.add_ended`). Requests
go through the whole app in process (authentication, the route, SQL on PostgreSQL, the
response model), a year's window each, for every `group_by`. For context it also times the
query the rollup replaces: the same year summed straight from `run_attempts`.

    .venv/bin/python -m bench.usage_bench                # ~1 minute
    .venv/bin/python -m bench.usage_bench --runs 112000 --requests 300
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from bench import seed
from core import migrate
from core.db import build_engine, make_sessionmaker, session_scope
from core.models import RunAttempt, utcnow
from core.settings import Settings
from core.usage import rollup

DATABASE = "trainport_usage_bench"
RUNNING = 50
ATTEMPTS_SQL = """
INSERT INTO run_attempts (run_id, attempt, org_id, project_id, cluster, gpu_type, gpus,
                          cpu_slots, admitted_at, started_at, ended_at, outcome, "where")
SELECT r.id, 1, r.org_id, r.project_id, 'gpu',
       CASE WHEN r.n %% 3 = 0 THEN 'a100' ELSE 'h100' END, 1 + r.n %% 8, 0, t.at, t.at,
       CASE WHEN r.n > %(n)s - %(running)s THEN NULL
            ELSE t.at + (600 + (r.n * 7919) %% 42600) * interval '1 second' END,
       CASE WHEN r.n > %(n)s - %(running)s THEN NULL ELSE 'succeeded' END, 'gpu'
FROM (SELECT id, org_id, project_id, row_number() OVER (ORDER BY id) AS n FROM runs) AS r,
     LATERAL (SELECT now() - interval '365 days'
                     + r.n * (365 * 86400.0 / %(n)s) * interval '1 second' AS at) AS t
"""
# What the usage API would cost without the rollup: a year of one org's attempts, clipped.
RAW_SQL = """
SELECT project_id, gpu_type,
       sum(gpus * extract(epoch FROM least(coalesce(ended_at, now()), %(to)s)
                                     - greatest(started_at, %(from)s)))
FROM run_attempts
WHERE org_id = %(org)s AND started_at < %(to)s AND coalesce(ended_at, now()) > %(from)s
GROUP BY project_id, gpu_type
"""


def prepare(runs: int) -> tuple[str, seed.Seeded]:
    url = seed.recreate_database(DATABASE)
    migrate.upgrade(url)
    tenants = seed._tenants(url)
    seed._fill(url, runs, tenants)
    with psycopg.connect(seed.dsn(url)) as conn:
        conn.execute(ATTEMPTS_SQL, {"n": runs, "running": RUNNING})
    factory = make_sessionmaker(build_engine(Settings(database_url=url)))
    with session_scope(factory) as session:
        ended = session.execute(
            select(*(getattr(RunAttempt, c) for c in rollup.Metered.__dataclass_fields__))
        ).all()
        rollup.add_ended(session, [rollup.Metered(*row) for row in ended])
    with psycopg.connect(seed.dsn(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    facts = seed.Seeded(
        database_url=url, runs=runs, measured_runs=0, org_id=tenants.org_id,
        other_org_id=tenants.other_orgs[0], api_key=tenants.api_key,
        project_ids=tenants.projects, head_version=0, seconds=0.0,
    )  # fmt: skip
    return url, facts


def reuse() -> tuple[str, seed.Seeded]:
    """The database the last run seeded, with a fresh admin key of its measured org."""
    url = seed.database_url(DATABASE)
    org_id, secret = seed.measured_org_key(url, "usage-bench")
    facts = seed.Seeded(
        database_url=url, runs=0, measured_runs=0, org_id=org_id, other_org_id="",
        api_key=secret, project_ids=[], head_version=0, seconds=0.0,
    )  # fmt: skip
    return url, facts


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(url: str, facts: seed.Seeded, requests: int) -> None:
    settings = Settings(database_url=url, gpu_hour_rates={"h100": 2.5, "a100": 1.2})
    client = TestClient(create_app(settings))
    today = utcnow().date()
    window = {"from": (today - timedelta(days=365)).isoformat(), "to": str(today + timedelta(1))}
    headers = {"Authorization": f"Bearer {facts.api_key}"}
    with psycopg.connect(seed.dsn(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM run_attempts WHERE org_id = %s", [facts.org_id]
        ).fetchone()
        rolled = conn.execute("SELECT count(*) FROM usage_daily").fetchone()
    print(f"org {facts.org_id}: {row[0] if row else 0} runs with one attempt each over 365 days")
    print(f"usage_daily rows (all orgs): {rolled[0] if rolled else 0}")
    # The yardstick: the same authenticated unit of work answering a trivial admin read.
    cases: list[tuple[str, str, dict[str, str]]] = [
        ("GET quota (yardstick)", f"/v1/orgs/{facts.org_id}/quota", {})
    ]
    cases += [
        (f"GET usage group_by={group_by}", f"/v1/orgs/{facts.org_id}/usage",
         {**window, "group_by": group_by})
        for group_by in ("project", "gpu_type", "day")
    ]  # fmt: skip
    for label, path, params in cases:
        for _ in range(10):  # warm up: connections, compiled statements
            client.get(path, params=params, headers=headers)
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(path, params=params, headers=headers)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
        body = response.json()
        shown = ""
        if "total" in body:
            shown = f"({len(body['data'])} rows, {body['total']['gpu_hours']:.0f} GPU-hours)"
        print(
            f"{label:32} p50 {statistics.median(samples):6.1f} ms  "
            f"p99 {percentile(samples, 0.99):6.1f} ms  {shown}"
        )
    with psycopg.connect(seed.dsn(url)) as conn:
        args = {"org": facts.org_id, "from": today - timedelta(days=365), "to": today}
        samples = []
        for _ in range(20):
            started = time.perf_counter()
            conn.execute(RAW_SQL, args).fetchall()
            samples.append((time.perf_counter() - started) * 1000)
    raw = statistics.median(samples)
    print(f"context: the same year summed from run_attempts, SQL only: p50 {raw:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=112_000, help="90%% land in the measured org")
    parser.add_argument("--requests", type=int, default=200, help="per group_by")
    parser.add_argument("--reuse", action="store_true", help="measure the last seed again")
    args = parser.parse_args()
    started = time.perf_counter()
    url, facts = reuse() if args.reuse else prepare(args.runs)
    print(f"seeded {args.runs} runs in {time.perf_counter() - started:.1f} s")
    measure(url, facts, args.requests)


if __name__ == "__main__":
    main()

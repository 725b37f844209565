"""`/metrics` scrape time with 10,000 active runs (issue 19). Prints numbers, never asserts.

A database of its own (`trainport_bench_metrics`) is seeded the way bench/seed.py seeds
(100,000 runs over 20 orgs, set-based SQL), then the newest `--active` runs are made active
(pending, queued, starting, running), the running ones given open GPU attempts on 4 clusters,
and 1,000 outbox rows left unpublished. One API process (uvicorn, as bench/servers.py runs it)
serves `/metrics`; the client scrapes it `--scrapes` times in a row and reports the wall time
of each full scrape (the HTTP series and the platform's gauges, read from the database).

    python -m bench.metrics_bench                 # ~30 s
    python -m bench.metrics_bench --active 10000 --scrapes 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from bench import seed, servers
from bench.workers_bench import machine, percentile
from core import migrate

DATABASE = "trainport_bench_metrics"
TOKEN = "bench-metrics-token"

ACTIVATE = """
WITH newest AS (
    SELECT id, row_number() OVER (ORDER BY id DESC) AS n FROM runs ORDER BY id DESC LIMIT %(active)s
)
UPDATE runs SET status = (ARRAY['pending', 'queued', 'starting', 'running'])[1 + newest.n %% 4],
                queued_at = now() - (newest.n || ' seconds')::interval, finished_at = NULL
FROM newest WHERE runs.id = newest.id
"""
CLUSTERS = """
INSERT INTO clusters (name, executor, inventory, updated_at)
SELECT 'gpu-' || i, 'kubernetes', jsonb_build_object('gpus', jsonb_build_object('h100', 512,
       'a100', 256)), now()
FROM generate_series(1, 4) AS g(i)
"""
ATTEMPTS = """
INSERT INTO run_attempts (run_id, attempt, org_id, project_id, cluster, gpu_type, gpus,
                          cpu_slots, admitted_at, "where")
SELECT id, 1, org_id, project_id, 'gpu-' || (1 + abs(hashtext(id)) % 4),
       CASE WHEN abs(hashtext(id)) % 3 = 0 THEN 'a100' ELSE 'h100' END, 8, 0, now(), ''
FROM runs WHERE status IN ('starting', 'running')
"""
OUTBOX = """
INSERT INTO outbox (task, payload, created_at)
SELECT 'trainport.schedule', '{}'::jsonb, now() - interval '5 seconds'
FROM generate_series(1, 1000)
"""


def prepare(runs: int, active: int) -> str:
    url = seed.recreate_database(DATABASE)
    migrate.upgrade(url)
    tenants = seed._tenants(url)
    seed._fill(url, runs, tenants)
    with psycopg.connect(seed.dsn(url), autocommit=True) as conn:
        conn.execute(ACTIVATE, {"active": active})
        conn.execute(CLUSTERS)
        conn.execute(ATTEMPTS)
        conn.execute(OUTBOX)
        conn.execute("VACUUM ANALYZE")
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--active", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    started = time.perf_counter()
    url = prepare(args.runs, args.active)
    seeded_s = time.perf_counter() - started
    env = {
        "TRAINPORT_DATABASE_URL": url,
        "TRAINPORT_METRICS_ENABLED": "true",
        "TRAINPORT_METRICS_TOKEN": TOKEN,
        "TRAINPORT_RATE_LIMIT_PER_KEY": "10000000/second",
        "TRAINPORT_RATE_LIMIT_PER_ORG": "10000000/second",
    }
    with (
        tempfile.TemporaryDirectory(prefix="metrics-bench-") as tmp,
        servers.serve("api.main:app", "/healthz", env, Path(tmp) / "api.log") as api,
        httpx.Client(base_url=f"http://127.0.0.1:{api.port}", timeout=30) as http,
    ):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for _ in range(3):  # warm: connections, compiled statements
            http.get("/metrics", headers=headers).raise_for_status()
        took, size, series = [], 0, 0
        for _ in range(args.scrapes):
            begun = time.perf_counter()
            response = http.get("/metrics", headers=headers)
            took.append((time.perf_counter() - begun) * 1000)
            response.raise_for_status()
            size = len(response.content)
            series = sum(1 for line in response.text.splitlines() if not line.startswith("#"))
    with psycopg.connect(seed.dsn(url)) as conn:
        counted = conn.execute(
            "SELECT count(*) FROM runs WHERE status IN "
            "('pending', 'queued', 'starting', 'running', 'stopping')"
        ).fetchone()
    report = {
        "machine": machine(),
        "runs": args.runs,
        "active runs": counted[0] if counted else 0,
        "seed s": round(seeded_s, 1),
        "scrapes": args.scrapes,
        "scrape ms p50": round(statistics.median(took), 1),
        "scrape ms p95": round(percentile(took, 0.95), 1),
        "scrape ms max": round(max(took), 1),
        "response bytes": size,
        "samples": series,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

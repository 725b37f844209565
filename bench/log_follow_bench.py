"""Live-follow lag of run logs (issue 13, finding 3). Prints numbers, never asserts.

For each backend: an API process (uvicorn) with a state folder of its own, as a replica in
another pod has, and in this process a worker's local executor with its log shipper (the same
code `executor_for` builds). A run's rank prints the wall clock every `--interval` seconds,
`--lines` times; a client follows `GET /v1/runs/{id}/logs?follow=true` over HTTP and, for every
line, takes its arrival time minus the time printed in it: the whole path, rank → spool file →
shipper → database → (NOTIFY or poll) → API → client. Both ends read the same clock.

    python -m bench.log_follow_bench                       # both backends, ~30 s
    python -m bench.log_follow_bench --backend postgres --lines 1000 --interval 0.005
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import servers
from bench.workers_bench import bootstrap_org, database, machine, percentile, platform_env
from core import db
from core.launch_request import LaunchRequest
from core.log_archive import LogArchive
from core.logs import LogStore
from core.settings import Settings
from workers.executors.local import LocalExecutor

# The rank: the wall clock, one line every `interval` seconds.
TICKER = (
    "import sys, time\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    print(repr(time.time()), flush=True)\n"
    "    time.sleep(float(sys.argv[2]))\n"
)


def follow_lags(api_url: str, key: str, run_id: str, lines: int) -> list[float]:
    """Seconds from each line's print to its arrival at a following client, for the lines
    printed once the client was following (earlier ones wait for the client, not the path)."""
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{api_url}/v1/runs/{run_id}/logs"
    lags: list[float] = []
    received = 0
    deadline = time.monotonic() + 30
    while not lags and time.monotonic() < deadline:
        params = {"attempt": "1", "follow": "true"}
        with httpx.stream("GET", url, params=params, headers=headers, timeout=60) as response:
            if response.status_code == 404:  # no line is stored yet
                time.sleep(0.01)
                continue
            opened, received = time.time(), 0
            for line in response.iter_lines():
                _, stream, text = line.split(" ", 2)
                if stream == "stdout":
                    received += 1
                    if float(text) > opened:
                        lags.append(time.time() - float(text))
    if received != lines:
        raise RuntimeError(f"followed {received} of {lines} lines")
    return lags


def create_run(api_url: str, key: str) -> str:
    """The run row (through the API); this bench launches its attempt itself."""
    headers = {"Authorization": f"Bearer {key}"}
    created = httpx.post(f"{api_url}/v1/runs", json={"command": ["true"]}, headers=headers)
    created.raise_for_status()
    run_id: str = created.json()["id"]
    return run_id


def measure(backend: str, lines: int, interval: float) -> dict[str, Any]:
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix=f"logbench-{backend}-") as tmp:
        folder = Path(tmp)
        with database(backend, folder) as url:
            _, key = bootstrap_org(url)
            env = platform_env(backend, url, folder / "api", {})
            with servers.serve("api.main:app", "/healthz", env, folder / "api.log") as api:
                api_url = f"http://127.0.0.1:{api.port}"
                run_id = create_run(api_url, key)
                engine = db.build_engine(Settings(database_url=url))
                archive = LogArchive(db.make_sessionmaker(engine), settings.log_max_bytes_per_rank)
                spool = LogStore(folder / "worker" / "logs")
                executor = LocalExecutor(folder / "worker", spool, api_url, archive=archive)
                command = [sys.executable, "-c", TICKER, str(lines), str(interval)]
                executor.launch(LaunchRequest(run_id, "bench", 1, {"command": command}))
                lags = follow_lags(api_url, key, run_id, lines)
                executor.cleanup(run_id, 1)
                assert executor.shipper is not None
                executor.shipper.stop()
                engine.dispose()
    ms = [lag * 1000 for lag in lags]
    return {
        "backend": backend,
        "lines followed live": len(ms),
        "lag ms p50": round(statistics.median(ms), 1),
        "lag ms p90": round(percentile(ms, 0.90), 1),
        "lag ms p99": round(percentile(ms, 0.99), 1),
        "lag ms max": round(max(ms), 1),
        "TRAINPORT_LOG_FLUSH_SECONDS": archive.flush_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between lines")
    args = parser.parse_args()
    print(json.dumps({"machine": machine(), "target": "lag p99 < 1000 ms"}, indent=2))
    for backend in ["postgres", "sqlite"] if args.backend == "both" else [args.backend]:
        print(json.dumps(measure(backend, args.lines, args.interval), indent=2), flush=True)


if __name__ == "__main__":
    main()

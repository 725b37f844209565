"""Exactly the processes docker-compose.yml names, against the embedded mode (issue 13).

Prints numbers, never asserts. Two platforms, one after the other, on this machine:

- **embedded**: what `trainport server` runs (the API under uvicorn and
  `python -m workers.embedded`) on SQLite, started as bench/workers_bench.py starts it;
- **compose**: every Trainport service of docker-compose.yml as a local process, started as
  tests/deploy/test_compose_processes.py starts them (the service's command and the file's
  `x-trainport` environment, adapted to this machine: a fresh PostgreSQL database, the local
  Redis, a state folder, a free port): `migrate` first, then `api`, `worker` (Celery prefork,
  `--concurrency=2`), `beat` and `relay`.

On each, with default settings (the sandbox as the compose file sets it, `auto`):

- **submit → running**: `--latency-runs` runs, one after another on an idle platform, each
  `python -c "print(1)"`; latency = the attempt's `started_at` (recorded once the executor's
  launch returned: the rank's processes exist) minus the run's `created_at`, both from the API;
- **burst**: `--burst` runs of `python -c "print(1)"` posted back to back: first POST → the
  client has seen every one `succeeded`.

Target: compose within ±20 % of embedded on both.

    python -m bench.compose_bench                           # ~2 min on 2 cores
    python -m bench.compose_bench --latency-runs 10 --burst 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench import servers
from bench.workers_bench import (
    PY,
    ROOT,
    Platform,
    bootstrap_org,
    burst_seconds,
    database,
    machine,
    percentile,
    platform,
    submit,
    wait_finished,
)
from tests.deploy.test_compose_processes import (
    Stack,
    _seconds,
    _start,
    _wait_ready,
    compose_env,
    local_argv,
    stop_services,
    trainport_services,
)

IDLE_BETWEEN_RUNS_S = 0.7  # the previous run's settling pass must not catch the next one
TRIVIAL = [PY, "-c", "print(1)"]


@contextmanager
def compose(folder: Path) -> Iterator[Platform]:
    """The compose file's Trainport services as local processes, on PostgreSQL + Redis."""
    with database("postgres", folder) as url:
        port, state = servers.free_port(), folder / "state"
        api_url = f"http://127.0.0.1:{port}"
        env = compose_env(url, api_url, state)
        commands = {n: local_argv(a, port, folder) for n, a in trainport_services().items()}
        subprocess.run(commands.pop("migrate"), cwd=ROOT, env=env, check=True, timeout=120)
        started = {name: _start(name, argv, env, folder) for name, argv in commands.items()}
        try:
            _wait_ready(Stack(env, api_url, url, started))
            _, key = bootstrap_org(url)
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=api_url, headers=headers, timeout=60) as client:
                pids = tuple(service.process.pid for service in started.values())
                yield Platform(client, pids, folder)
        finally:
            stop_services(started, state)


@contextmanager
def embedded(folder: Path) -> Iterator[Platform]:
    with database("sqlite", folder) as url:
        _, key = bootstrap_org(url)
        with platform("sqlite", url, key, folder, {}) as plat:
            yield plat


def submit_to_running(plat: Platform, runs: int) -> list[float]:
    """Milliseconds from `created_at` to the attempt's `started_at`, run after run."""
    found = []
    for _ in range(runs):
        time.sleep(IDLE_BETWEEN_RUNS_S)
        run_id = submit(plat.client, TRIVIAL)
        wait_finished(plat.client, run_id)
        run = plat.client.get(f"/v1/runs/{run_id}").json()
        started = run["started_at"] or run["attempts"][0]["started_at"]
        found.append((_seconds(started) - _seconds(run["created_at"])) * 1000)
    return found


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"cbench-{name}-") as tmp:
        starter = compose if name == "compose" else embedded
        with starter(Path(tmp)) as plat:
            latencies = submit_to_running(plat, args.latency_runs)
            seconds, outcomes = burst_seconds(plat, args.burst)
    return {
        "platform": name,
        "submit -> running ms p50": round(statistics.median(latencies), 1),
        "submit -> running ms p95": round(percentile(latencies, 0.95), 1),
        f"{args.burst} runs: first submit -> all finished s": round(seconds, 2),
        f"{args.burst} runs: outcomes": outcomes,
    }


def compare(embedded_: dict[str, Any], compose_: dict[str, Any]) -> dict[str, str]:
    """compose / embedded for each figure (lower is faster), against the ±20 % target."""
    verdicts = {}
    for key, base in embedded_.items():
        if isinstance(base, float) and base > 0:
            ratio = compose_[key] / base
            verdict = "slower" if ratio > 1.2 else "faster" if ratio < 0.8 else "within ±20 %"
            verdicts[key] = f"{ratio:.2f}x: {verdict}"
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--only", choices=["embedded", "compose"], help="measure one platform")
    args = parser.parse_args()
    print(json.dumps({"machine": machine(), "target": "compose = embedded ±20 %"}, indent=2))
    results = {}
    for name in [args.only] if args.only else ["embedded", "compose"]:
        results[name] = measure(name, args)
        print(json.dumps(results[name], indent=2), flush=True)
    if len(results) == 2:
        print(json.dumps({"compose / embedded": compare(*results.values())}, indent=2))


if __name__ == "__main__":
    main()

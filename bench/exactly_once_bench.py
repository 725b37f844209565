"""Exactly once under ordinary concurrency (issue 13, finding 1). Prints numbers, never asserts.

Starts the production processes as an operator runs them, on PostgreSQL + Redis with the local
executor: two `celery -A workers.celery_app worker --concurrency=2` processes, `celery beat`,
`python -m workers.relay` and the API under uvicorn. Then posts `--runs` runs (default 2,000)
through the API, each a command that appends its run id to one file, waits until every run is
terminal (or `--timeout` passes) and reports:

- duplicate lines: a run id written more than once means its command ran more than once;
- runs that are not terminal, and succeeded runs whose id never reached the file;
- attempts ended `node_lost`, and runs that needed more than one attempt (no fault is injected
  here, so each of those is the platform's doing);
- submit → all terminal, in seconds.

The worker processes run with `TRAINPORT_SANDBOX=off`: a sandboxed rank sees only its own
filesystem view and cannot append to the shared file. This bench measures exactly-once
delivery, not the sandbox (bench/sandbox_bench.py measures that).

    python -m bench.exactly_once_bench                   # 2,000 runs, several minutes on 2 cores
    python -m bench.exactly_once_bench --runs 300 --env TRAINPORT_LOCAL_CPU_SLOTS=4
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench import servers
from bench.workers_bench import (
    PY,
    ROOT,
    bootstrap_org,
    database,
    machine,
    platform_env,
    wait_for_log,
)
from core import db
from core.models import Run, RunAttempt, RunEvent, TaskDelivery
from core.outbox import Task
from core.settings import Settings

TERMINAL = {"succeeded", "failed", "cancelled"}
STOP_TIMEOUT_S = 40.0
# Appends its run id, one line, in one write(2) on an O_APPEND file: lines never interleave.
COMMAND = 'echo "$TRAINPORT_RUN_ID" >> {path}'


@contextmanager
def process(
    name: str, argv: list[str], env: dict[str, str], folder: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """One production process in its own process group; SIGTERM (then SIGKILL) at the end."""
    log = folder / f"{name}.log"
    with log.open("wb") as sink:
        started = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield started, log
    finally:
        os.killpg(started.pid, signal.SIGTERM)
        try:
            started.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(started.pid, signal.SIGKILL)
            started.wait()


@contextmanager
def production(url: str, folder: Path, extra: dict[str, str]) -> Iterator[servers.Served]:
    """Two workers, beat, relay and the API: the processes docker-compose.yml would run."""
    env = platform_env("postgres", url, folder, {"TRAINPORT_SANDBOX": "off", **extra})
    celery = [PY, "-m", "celery", "-A", "workers.celery_app"]
    queue = env["TRAINPORT_CELERY_QUEUE"]
    with ExitStack() as stack:
        for index in (1, 2):
            argv = [*celery, "worker", "--loglevel=INFO", "--concurrency=2", "-Q", queue]
            argv += ["-n", f"bench{index}@%h"]
            worker, log = stack.enter_context(process(f"worker{index}", argv, env, folder))
            wait_for_log(log, " ready.", worker)
        schedule = f"--schedule={folder / 'celerybeat-schedule'}"
        stack.enter_context(
            process("beat", [*celery, "beat", "--loglevel=INFO", schedule], env, folder)
        )
        stack.enter_context(process("relay", [PY, "-m", "workers.relay"], env, folder))
        yield stack.enter_context(
            servers.serve("api.main:app", "/healthz", env, folder / "api.log")
        )


def submit_all(port: int, key: str, runs: int, ids: Path, submitters: int) -> list[str]:
    body = {"command": ["sh", "-c", COMMAND.format(path=ids)]}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:

        def one(_: int) -> str:
            response = client.post("/v1/runs", json=body)
            response.raise_for_status()
            return str(response.json()["id"])

        with ThreadPoolExecutor(submitters) as pool:
            return list(pool.map(one, range(runs)))


def statuses(url: str) -> Counter[str]:
    engine = db.build_engine(Settings(database_url=url))
    try:
        with db.session_scope(db.make_sessionmaker(engine)) as session:
            rows = session.execute(select(Run.status, func.count()).group_by(Run.status)).all()
    finally:
        engine.dispose()
    return Counter({str(status): int(count) for status, count in rows})


def wait_terminal(url: str, runs: int, timeout: float) -> Counter[str]:
    """Bounded poll of the database, once a second, until every run is terminal."""
    deadline = time.monotonic() + timeout
    while True:
        found = statuses(url)
        if sum(found[s] for s in TERMINAL) >= runs or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def attempts(url: str) -> dict[str, Any]:
    engine = db.build_engine(Settings(database_url=url))
    try:
        with db.session_scope(db.make_sessionmaker(engine)) as session:
            reasons = session.execute(
                select(RunAttempt.reason, func.count()).group_by(RunAttempt.reason)
            ).all()
            retried = session.scalar(select(func.count()).where(Run.attempt > 1))
    finally:
        engine.dispose()
    return {
        "attempt endings": {str(reason): int(count) for reason, count in reasons},
        "runs with more than one attempt": int(retried or 0),
    }


def lost_attempts(url: str, limit: int = 5) -> list[dict[str, Any]]:
    """For up to `limit` attempts ended `node_lost`: the message, and the run's timeline (ms
    after admission: status events, the launch task's completion, the attempt's end)."""
    engine = db.build_engine(Settings(database_url=url))
    found = []
    try:
        with db.session_scope(db.make_sessionmaker(engine)) as session:
            lost = session.execute(
                select(RunAttempt).where(RunAttempt.reason == "node_lost").limit(limit)
            ).scalars()
            for attempt in lost:
                origin = attempt.admitted_at
                events = session.scalars(
                    select(RunEvent).where(RunEvent.run_id == attempt.run_id).order_by(RunEvent.id)
                ).all()
                launch = session.get(
                    TaskDelivery, (Task.LAUNCH.value, attempt.run_id, attempt.attempt)
                )
                timeline = {
                    f"{e.from_status}->{e.to_status}": _ms(e.created_at, origin)
                    for e in events
                    if e.created_at >= origin and e.to_status
                }
                if launch is not None and launch.completed_at is not None:
                    timeline["launch completed"] = _ms(launch.completed_at, origin)
                if attempt.ended_at is not None:
                    timeline["attempt ended"] = _ms(attempt.ended_at, origin)
                found.append({"run": attempt.run_id, "message": attempt.message, **timeline})
    finally:
        engine.dispose()
    return found


def _ms(at: datetime, origin: datetime) -> float:
    return round((at - origin).total_seconds() * 1000, 1)


def measure(args: argparse.Namespace, extra: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="exactly-once-") as tmp:
        folder = Path(tmp)
        ids = folder / "ids"
        with database("postgres", folder) as url:
            _, key = bootstrap_org(url)
            with production(url, folder, extra) as api:
                started = time.monotonic()
                run_ids = submit_all(api.port, key, args.runs, ids, args.submitters)
                submitted = time.monotonic() - started
                found = wait_terminal(url, args.runs, args.timeout)
                seconds = time.monotonic() - started
            lines = ids.read_text().splitlines() if ids.exists() else []
            counts = Counter(lines)
            return {
                "runs": args.runs,
                "submit s": round(submitted, 1),
                "submit -> all terminal s": round(seconds, 1),
                "statuses": dict(found),
                "non-terminal runs": sum(n for s, n in found.items() if s not in TERMINAL),
                "lines written": len(lines),
                "duplicate lines": len(lines) - len(counts),
                "runs that wrote more than once": sum(1 for n in counts.values() if n > 1),
                "runs that never wrote": len(set(run_ids) - set(counts)),
                **attempts(url),
                "node_lost examples": lost_attempts(url),
            }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--submitters", type=int, default=4, help="concurrent POST /v1/runs")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for all")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for every process")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    print(json.dumps({"machine": machine(), "platform env": extra}, indent=2), flush=True)
    print(json.dumps(measure(args, extra), indent=2), flush=True)


if __name__ == "__main__":
    main()

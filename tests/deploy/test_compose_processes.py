"""Exactly the Trainport processes docker-compose.yml names, started for real on this machine.

No Docker engine here, so each Trainport service of the compose file becomes a local process:
its `command` (the Dockerfile's `CMD` where a service names none), the same argv run with this
virtualenv, and the environment of the file's `x-trainport` block with only what must differ
on a shared test machine: this test's own PostgreSQL database and the test Redis (with a queue
of its own), a temporary state folder, the API on a free loopback port (and runs calling it
there), beat's schedule file in that folder, and test signing and encryption keys. The
environment stays `production`; the local executor sandboxes each rank (bubblewrap) as set.

The migration runs first and must succeed (as `depends_on` orders it); every other service
then runs side by side. Runs go in through the API, one after another, and must succeed; the
outbox row each submission wrote must have been published by the relay process (it logs every
row it publishes) rather than picked up by a worker's reconcile pass a second later.
Submit → running (when the run's processes existed, minus its `created_at`) is printed, not
asserted. The worker runs the threads pool (TRAINPORT_WORKER_POOL's default: one process, no
prefork children), and runs submitted all at once by as many clients each start exactly once.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from core.logs import LogStore
from core.models import OutboxMessage
from core.outbox import Task
from tests.support.platforms import REDIS_URL
from tests.support.postgres import ADMIN_URL
from workers.executors.local import LocalExecutor

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RUNS = 8
CONCURRENT_RUNS = 8
READY_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 60.0
IDLE_BETWEEN_RUNS_S = 0.7
# The relay logs the ids it published, as ranges: "published 3 outbox row(s): 7-8, 11".
PUBLISHED = re.compile(r"published \d+ outbox row\(s\): ([\d, -]+)")


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def _image_cmd() -> list[str]:
    """The Dockerfile's last `CMD`, in its JSON (exec) form."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    cmd: list[str] = json.loads([ln for ln in lines if ln.startswith("CMD ")][-1][4:])
    return cmd


def _expand(value: str) -> str:
    """Compose's `${VAR:-default}` with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def trainport_services() -> dict[str, list[str]]:
    """Each service built from the Trainport image, with the argv it runs."""
    compose = _compose()
    image = compose["x-trainport"]["image"]
    return {
        name: list(service.get("command") or _image_cmd())
        for name, service in compose["services"].items()
        if service.get("image") == image
    }


def local_argv(argv: list[str], port: int, folder: Path) -> list[str]:
    """The service's argv as a local process: this virtualenv's programs, loopback, our port."""
    program = VENV_BIN / argv[0]
    local = [str(program) if program.exists() else argv[0], *argv[1:]]
    for index, part in enumerate(local[:-1]):
        if part == "--host":
            local[index + 1] = "127.0.0.1"
        if part == "--port":
            local[index + 1] = str(port)
    return [
        f"--schedule={folder / 'celerybeat-schedule'}" if part.startswith("--schedule=") else part
        for part in local
    ]


def compose_env(database_url: str, api_url: str, state: Path) -> dict[str, str]:
    """The compose file's x-trainport environment, adapted to this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env |= {k: _expand(str(v)) for k, v in _compose()["x-trainport"]["environment"].items()}
    env |= {
        "TRAINPORT_DATABASE_URL": database_url,
        "TRAINPORT_BROKER_URL": REDIS_URL,
        "TRAINPORT_CELERY_QUEUE": f"compose-{secrets.token_hex(4)}",  # Redis is shared here
        "TRAINPORT_PUBLIC_URL": api_url,
        "TRAINPORT_STATE_DIR": str(state),
        "TRAINPORT_SECRET_KEY": secrets.token_hex(32),
        "TRAINPORT_SECRETS_KEY": secrets.token_urlsafe(32),
    }
    return env


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Stack:
    env: dict[str, str]
    api_url: str
    database_url: str
    services: dict[str, Service]


def _admin(sql: str) -> None:
    dsn = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(name: str, argv: list[str], env: dict[str, str], folder: Path) -> Service:
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Service(name, process, log)


def _stop(service: Service) -> None:
    if service.process.poll() is None:
        os.killpg(service.process.pid, signal.SIGTERM)
        try:
            service.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait(timeout=10)


def _wait_ready(stack: Stack) -> None:
    """The API answers /readyz, the worker says `ready.`, the relay says it started."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:  # bounded poll: other processes, only their logs say
        for service in stack.services.values():
            if service.process.poll() is not None:
                raise AssertionError(f"{service.name} exited early:\n{service.text()[-4000:]}")
        try:
            ready = httpx.get(f"{stack.api_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            ready = False
        logs = {name: service.text() for name, service in stack.services.items()}
        worker_ready = all(" ready." in text for name, text in logs.items() if name == "worker")
        relay_ready = all("relay started" in text for name, text in logs.items() if name == "relay")
        if ready and worker_ready and relay_ready:
            return
        time.sleep(0.1)
    tails = "\n".join(f"--- {n}\n{s.text()[-2000:]}" for n, s in stack.services.items())
    raise AssertionError(f"the stack was not ready in {READY_TIMEOUT_S}s:\n{tails}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    name = f"trainport_compose_{secrets.token_hex(4)}"
    _admin(f'CREATE DATABASE "{name}"')  # empty: the migrate service makes the schema
    database_url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    port, state = _free_port(), tmp_path / "state"
    api_url = f"http://127.0.0.1:{port}"
    env = compose_env(database_url, api_url, state)
    commands = {n: local_argv(a, port, tmp_path) for n, a in trainport_services().items()}
    started: dict[str, Service] = {}
    try:
        migration = subprocess.run(
            commands.pop("migrate"), cwd=ROOT, env=env, capture_output=True, timeout=120
        )
        assert migration.returncode == 0, migration.stderr.decode(errors="replace")
        for service, argv in commands.items():
            started[service] = _start(service, argv, env, tmp_path)
        built = Stack(env, api_url, database_url, started)
        _wait_ready(built)
        yield built
    finally:
        stop_services(started, state)
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(state, ignore_errors=True)


def stop_services(started: dict[str, Service], state: Path) -> None:
    """Stop every service, then any training process they left (never leave one behind)."""
    for service in started.values():
        _stop(service)
    leftovers = LocalExecutor(state, LogStore(state / "logs"), "")
    for seen in leftovers.observe():
        leftovers.cleanup(seen.run_id, seen.attempt)


def _bootstrap(stack: Stack) -> dict[str, str]:
    """As the README says: `python -m api.admin bootstrap --org acme` beside the API."""
    made = subprocess.run(
        [sys.executable, "-m", "api.admin", "bootstrap", "--org", "acme", "--json"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    key = json.loads(made.stdout)["api_key"]
    return {"Authorization": f"Bearer {key}"}


def _finished(client: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline, version = time.monotonic() + RUN_TIMEOUT_S, 0
    while True:  # long polls: the API wakes on the worker's NOTIFY
        response = client.get(f"/v1/runs/{run_id}", params={"wait": 5, "resource_version": version})
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        if run["status"] in {"succeeded", "failed", "cancelled"}:
            return run
        assert time.monotonic() < deadline, f"run stayed {run['status']}: {run['status_message']}"
        version = run["resource_version"]


def _relay_published(log: str) -> set[int]:
    ids: set[int] = set()
    for ranges in PUBLISHED.findall(log):
        for part in ranges.split(","):
            low, _, high = part.strip().partition("-")
            ids.update(range(int(low), int(high or low) + 1))
    return ids


def _schedule_rows(database_url: str, run_ids: list[str]) -> dict[str, int]:
    """The outbox row each submission wrote (the `schedule` task naming the run): run → row."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(OutboxMessage.id, OutboxMessage.payload, OutboxMessage.sent_at).where(
                    OutboxMessage.task == Task.SCHEDULE.value
                )
            ).all()
    finally:
        engine.dispose()
    by_run = {row.payload.get("run_id"): row for row in rows}
    assert all(by_run[run_id].sent_at is not None for run_id in run_ids)
    return {run_id: by_run[run_id].id for run_id in run_ids}


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _submit_to_running(run: dict[str, Any]) -> float:
    """Seconds from the submission until the run's processes existed. A command this short can
    end before anyone sees it running (`starting` → `succeeded`): then its attempt's start."""
    started = run["started_at"] or run["attempts"][0]["started_at"]
    return _seconds(started) - _seconds(run["created_at"])


def test_the_compose_processes_run_jobs_delivered_by_the_relay(stack: Stack) -> None:
    assert {"api", "worker", "beat", "relay"} <= set(stack.services), (
        f"docker-compose.yml starts {sorted(stack.services)} besides migrate"
    )
    headers = _bootstrap(stack)
    spec = {"command": [sys.executable, "-c", "print(1)"]}
    runs = []
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as client:
        for _ in range(RUNS):  # one after another, on an otherwise idle platform
            # Not at once: the previous run's settling pass drains the outbox right after its
            # `succeeded`, and would catch (and time) a submission sent that very moment.
            time.sleep(IDLE_BETWEEN_RUNS_S)
            response = client.post("/v1/runs", json=spec)
            assert response.status_code == 201, response.text
            runs.append(_finished(client, response.json()["id"]))
    assert [run["status"] for run in runs] == ["succeeded"] * RUNS, runs
    latencies = [_submit_to_running(run) for run in runs]
    print(
        f"\ncompose processes: submit -> running p50 {statistics.median(latencies) * 1000:.0f} ms"
        f" (min {min(latencies) * 1000:.0f}, max {max(latencies) * 1000:.0f}, {RUNS} runs)"
    )
    rows = _schedule_rows(stack.database_url, [run["id"] for run in runs])
    relay_log = stack.services["relay"].text() if "relay" in stack.services else ""
    by_relay = set(rows.values()) & _relay_published(relay_log)
    print(f"the relay published {len(by_relay)} of {RUNS} submissions' outbox rows")
    # A worker's own drain can win a row now and then (it drains after each pass); the relay,
    # woken by the submission's NOTIFY, must deliver nearly all of them.
    assert len(by_relay) >= RUNS - 2, (rows, relay_log[-3000:])


def _children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
        if parent == pid:
            found.append(int(entry))
    return found


def _submit(stack: Stack, headers: dict[str, str], command: list[str]) -> str:
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as client:
        response = client.post("/v1/runs", json={"command": command})
        while response.status_code == 429:  # a well-behaved client: wait as told, then retry
            time.sleep(float(response.headers.get("Retry-After", "1")))
            response = client.post("/v1/runs", json={"command": command})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


def test_the_compose_worker_is_one_process_that_starts_concurrent_runs_once(stack: Stack) -> None:
    worker = stack.services["worker"]
    assert "(thread)" in worker.text()  # Celery's banner: "concurrency: 4 (thread)"
    assert _children(worker.process.pid) == []  # no prefork pool
    headers = _bootstrap(stack)
    commands = [[sys.executable, "-c", f"print('ran {i}')"] for i in range(CONCURRENT_RUNS)]
    with ThreadPoolExecutor(CONCURRENT_RUNS) as clients:
        ids = list(clients.map(lambda command: _submit(stack, headers, command), commands))
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as client:
        runs = [_finished(client, run_id) for run_id in ids]
        logs = [client.get(f"/v1/runs/{run_id}/logs").text for run_id in ids]
    assert [run["status"] for run in runs] == ["succeeded"] * CONCURRENT_RUNS, runs
    assert [len(run["attempts"]) for run in runs] == [1] * CONCURRENT_RUNS
    printed = [log.count(f" stdout ran {i}") for i, log in enumerate(logs)]  # each line once
    assert printed == [1] * CONCURRENT_RUNS, logs

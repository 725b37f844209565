"""The platform under failure: a worker killed mid-flight, the broker gone while runs arrive."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from api.app import create_app
from core import db, outbox
from core.models import TaskDelivery
from core.settings import Settings
from tests.factories import create_run, make_tenant
from tests.support.platforms import StartPlatform, wait_for_file, wait_for_run
from tests.support.servers import free_port

PY = sys.executable


@contextmanager
def api(database_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=database_url, key_touch_interval_seconds=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def gated_command(marker: Path, gate: Path) -> list[str]:
    """Appends its pid to `marker`, then waits (bounded) until the test opens `gate`."""
    body = (
        "import os, time, pathlib\n"
        f"with open({str(marker)!r}, 'a') as out: out.write(f'{{os.getpid()}}\\n')\n"
        f"gate = pathlib.Path({str(gate)!r})\n"
        "deadline = time.monotonic() + 60\n"
        "while not gate.exists() and time.monotonic() < deadline: time.sleep(0.02)\n"
    )
    return [PY, "-c", body]


def test_a_worker_killed_between_launch_and_status_update_runs_the_command_once(
    make_database: Callable[[], str], start_platform: StartPlatform, tmp_path: Path
) -> None:
    url = make_database()
    marker, gate = tmp_path / "pids", tmp_path / "gate"
    # This worker's reconciler never comes round, so nothing records that the run started.
    doomed = start_platform(url, reconcile_interval_seconds=3600)
    with api(url) as client:
        tenant = make_tenant(client)
        run = create_run(client, tenant, command=gated_command(marker, gate))
        wait_for_file(marker)  # launched: the command runs
        fetched = client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).json()
        assert fetched["status"] == "starting"  # ...but no status update has happened yet
        doomed.kill()
        factory = db.make_sessionmaker(db.build_engine(Settings(database_url=url)))
        with db.session_scope(factory) as session:
            # Die one statement earlier: after the processes started, before the launch was
            # recorded as done; then the broker redelivers the unacknowledged launch.
            session.execute(update(TaskDelivery).values(completed_at=None))
            outbox.enqueue(session, outbox.Task.LAUNCH, run_id=run["id"], attempt=1)
        start_platform(url)
        gate.touch()
        done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["status_message"]
    assert len(marker.read_text().splitlines()) == 1  # exactly one set of processes ran
    assert [a["outcome"] for a in done["attempts"]] == ["succeeded"]


@contextmanager
def redis_server(port: int) -> Iterator[Callable[[], None]]:
    """A throwaway redis-server; yields a function that stops it (it restarts on leaving)."""
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _wait_for_port(port)

    def stop() -> None:
        server.terminate()
        server.wait(timeout=10)

    try:
        yield stop
    finally:
        stop()


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # bounded poll: a server has no "ready" event for us
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on port {port}")


def test_runs_created_while_redis_is_down_start_once_it_is_back(
    make_database: Callable[[], str], start_platform: StartPlatform
) -> None:
    url, port = make_database(), free_port()
    with redis_server(port) as stop_redis, api(url) as client:
        platform = start_platform(url, broker_url=f"redis://127.0.0.1:{port}/0")
        tenant = make_tenant(client)
        stop_redis()
        runs = [create_run(client, tenant, command=[PY, "-c", "print(1)"]) for _ in range(3)]
        assert {r["status"] for r in runs} == {"pending"}  # every create answered 201
        with redis_server(port):
            try:
                done = [
                    wait_for_run(client, tenant, r["id"], {"succeeded", "failed"}, 60) for r in runs
                ]
            except AssertionError as stuck:  # seen once in CI: show what the workers did
                raise AssertionError(f"{stuck}\n{platform.log_text()[-8000:]}") from stuck
    assert [r["status"] for r in done] == ["succeeded"] * 3

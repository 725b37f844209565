"""The platform under failure: a worker killed mid-flight, the broker gone while runs arrive."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import update

from core import db, outbox
from core.models import TaskDelivery
from core.settings import Settings
from tests.factories import create_run, make_tenant
from tests.support.launches import PY, api, gated_command, launch_deliveries, launch_held
from tests.support.platforms import Platform, StartPlatform, wait_for_file, wait_for_run
from tests.support.servers import free_port


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


def _wait_for_log(platform: Platform, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in platform.log_text():  # bounded poll: the worker's log is all we can see
        assert platform.process.poll() is None, f"the worker exited:\n{platform.log_text()}"
        assert time.monotonic() < deadline, f"never logged {text!r}:\n{platform.log_text()}"
        time.sleep(0.05)


def test_a_worker_that_loses_redis_mid_task_reconnects_and_keeps_consuming(
    make_database: Callable[[], str], start_platform: StartPlatform, tmp_path: Path
) -> None:
    """The broker dies while a task is in flight (delivered, not yet acknowledged) and the
    consumer waits in BRPOP: kombu's channel close then fails half-way, and closing it again
    through the collected transport raised AttributeError, which Celery 5.7 took for an
    unrecoverable error: the worker stopped consuming for good (CI, stop 25)."""
    url, port, state = make_database(), free_port(), tmp_path / "state"
    marker, gate = tmp_path / "pids", tmp_path / "gate"
    with redis_server(port) as stop_redis, api(url) as client:
        platform = start_platform(
            url, broker_url=f"redis://127.0.0.1:{port}/0", state_dir=state,
            launch_grace_seconds=3600,
        )  # fmt: skip
        tenant = make_tenant(client)
        held = create_run(client, tenant, command=gated_command(marker, gate))
        with launch_held(state, held["id"]):
            assert launch_deliveries(url, held["id"]) == 1  # in flight: delivered, unacked
            stop_redis()
            _wait_for_log(platform, "Connection to broker lost")
        with redis_server(port):
            gate.touch()
            after = create_run(client, tenant, command=[PY, "-c", "print(1)"])
            done = [wait_for_run(client, tenant, r["id"], {"succeeded", "failed"}, 60)
                    for r in (after, held)]  # fmt: skip
            assert platform.process.poll() is None, platform.log_text()[-8000:]
    assert [r["status"] for r in done] == ["succeeded"] * 2
    assert len(marker.read_text().splitlines()) == 1  # the held launch ran its command once

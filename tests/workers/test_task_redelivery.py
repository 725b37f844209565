"""A worker told to stop (SIGTERM) in the middle of a task: the task finishes, or goes elsewhere.

The launch is made slow the way a slow cluster makes it slow: after its delivery was counted and
before any process starts, it waits on the attempt's lock, which the test holds. The worker gets
SIGTERM there. A task that ends within `worker_shutdown_grace_seconds` finishes on that worker;
one that does not is handed back to the broker, and the worker exits at once, so a second
worker on the same queue receives the very same message and runs the command: exactly once.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core import db
from core.models import TaskDelivery
from core.outbox import Task
from core.settings import Settings
from tests.factories import create_run, make_tenant
from tests.support.platforms import Platform, StartPlatform, wait_for_file, wait_for_run
from tests.workers.test_failures import api, gated_command
from workers.executors.local_attempt import AttemptFiles

PY = sys.executable
STOP_TIMEOUT_S = 15.0  # well under the embedded supervisor's 30 s before it SIGKILLs


def launch_deliveries(url: str, run_id: str, at_least: int = 1, timeout: float = 30.0) -> int:
    """Bounded poll: how often attempt 1's launch was delivered, once it is `at_least`."""
    engine = db.build_engine(Settings(database_url=url))
    query = select(TaskDelivery.deliveries).where(
        TaskDelivery.task == Task.LAUNCH.value, TaskDelivery.run_id == run_id
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with db.session_scope(db.make_sessionmaker(engine)) as session:
                count = int(session.scalar(query) or 0)
            if count >= at_least:
                return count
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError(f"the launch of {run_id} was not delivered {at_least} time(s)")


@contextmanager
def launch_held(state: Path, run_id: str) -> Iterator[None]:
    """Hold attempt 1's lock: its launch, once delivered, waits here before starting anything."""
    with AttemptFiles(state.resolve() / "runs" / run_id, 1).locked():
        yield


def terminate(platform: Platform) -> int:
    """SIGTERM the whole process group, as systemd or a container stop does; its exit code."""
    os.killpg(platform.process.pid, signal.SIGTERM)
    code = platform.process.wait(timeout=STOP_TIMEOUT_S)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _group_alive(platform.process.pid):  # bounded poll: no event for "group is empty"
        assert time.monotonic() < deadline, "a process of the stopped worker outlived it"
        time.sleep(0.05)
    return code


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _settings(queue: str, state: Path, grace: float) -> dict[str, Any]:
    # Neither worker re-drives a launch on its own: only the broker's delivery can finish it.
    return {
        "celery_queue": queue,
        "state_dir": state,
        "launch_grace_seconds": 3600,
        "worker_shutdown_grace_seconds": grace,
    }


def test_sigterm_during_a_slow_launch_requeues_it_and_another_worker_finishes_the_run(
    make_database: Callable[[], str], start_platform: StartPlatform, tmp_path: Path
) -> None:
    url, queue = make_database(), f"test-{secrets.token_hex(4)}"
    state, marker, gate = tmp_path / "state", tmp_path / "pids", tmp_path / "gate"
    settings = _settings(queue, state, grace=0.5)
    with api(url) as client:
        tenant = make_tenant(client)
        run = create_run(client, tenant, command=gated_command(marker, gate))
        with launch_held(state, run["id"]):
            first = start_platform(url, **settings)
            assert launch_deliveries(url, run["id"]) == 1  # the launch is running, and waits
            assert terminate(first) != 0  # it gave up on the launch instead of waiting
        assert not marker.exists()  # nothing started while the first worker had the task
        second = start_platform(url, **settings)
        assert launch_deliveries(url, run["id"], at_least=2) == 2  # the same message, requeued
        gate.touch()
        done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["status_message"]
    assert len(marker.read_text().splitlines()) == 1  # exactly one set of processes ran
    assert "unfinished at shutdown" in first.log_text()
    assert "trainport.launch" in second.log_text()


def test_sigterm_during_a_launch_that_ends_within_the_grace_lets_it_finish_there(
    make_database: Callable[[], str], start_platform: StartPlatform, tmp_path: Path
) -> None:
    url, queue = make_database(), f"test-{secrets.token_hex(4)}"
    state, marker, gate = tmp_path / "state", tmp_path / "pids", tmp_path / "gate"
    settings = _settings(queue, state, grace=STOP_TIMEOUT_S / 2)
    with api(url) as client:
        tenant = make_tenant(client)
        run = create_run(client, tenant, command=gated_command(marker, gate))
        with launch_held(state, run["id"]):
            first = start_platform(url, **settings)
            assert launch_deliveries(url, run["id"]) == 1
            os.killpg(first.process.pid, signal.SIGTERM)
        wait_for_file(marker)  # the first worker launched it during its shutdown
        assert terminate(first) == 0  # ...and then stopped the ordinary way
        start_platform(url, **settings)  # someone has to see the run through
        gate.touch()
        done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["status_message"]
    assert len(marker.read_text().splitlines()) == 1
    assert launch_deliveries(url, run["id"]) == 1  # any redelivery found the launch done
    assert "unfinished at shutdown" not in first.log_text()

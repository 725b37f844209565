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
from collections.abc import Callable
from pathlib import Path

from tests.factories import create_run, make_tenant
from tests.support.launches import (
    api,
    gated_command,
    held_launch_settings,
    launch_deliveries,
    launch_held,
)
from tests.support.platforms import Platform, StartPlatform, wait_for_file, wait_for_run

PY = sys.executable
STOP_TIMEOUT_S = 15.0  # well under the embedded supervisor's 30 s before it SIGKILLs


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


def test_sigterm_during_a_slow_launch_requeues_it_and_another_worker_finishes_the_run(
    make_database: Callable[[], str], start_platform: StartPlatform, tmp_path: Path
) -> None:
    url, queue = make_database(), f"test-{secrets.token_hex(4)}"
    state, marker, gate = tmp_path / "state", tmp_path / "pids", tmp_path / "gate"
    settings = held_launch_settings(queue, state, grace=0.5)
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
    settings = held_launch_settings(queue, state, grace=STOP_TIMEOUT_S / 2)
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

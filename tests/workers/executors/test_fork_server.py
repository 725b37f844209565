"""Ranks' shims are forked by the executor's fork server (issue 17), and nothing depends on it.

A shim used to start as a new interpreter (~27 ms of CPU and as long before the command ran,
on every launch). Now one server per worker process forks them; when it is gone or refuses a
request, the executor starts the shim itself, and a rank still runs exactly once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from core.logs import LogStore
from tests.support.executors import FINISHED, PY, launch_request, wait_until
from workers.executors.base import RankPhase
from workers.executors.local import LocalExecutor
from workers.executors.local_attempt import read_json


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _shim_pid(executor: LocalExecutor, run_id: str) -> int:
    """The rank's shim, once it has claimed the rank (it writes its pid file after the fork)."""
    path = executor._files(run_id, 1).rank_file(0, "pid")
    deadline = time.monotonic() + 10
    while (identity := read_json(path)) is None and time.monotonic() < deadline:  # bounded
        time.sleep(0.005)
    assert identity is not None
    return int(identity["pid"])


def _server_pid(executor: LocalExecutor) -> int:
    process = executor.forks._process
    assert process is not None
    return process.pid


def test_every_shim_is_forked_by_one_server_which_reports_each_exit(
    executor: LocalExecutor,
) -> None:
    exits = threading.Semaphore(0)
    executor.on_shim_exit = exits.release
    gate = "import os, time\nwhile not os.path.exists('go'): time.sleep(0.01)\n"
    requests = [launch_request([PY, "-c", gate]) for _ in range(3)]
    for request in requests:
        executor.launch(request)
    server = _server_pid(executor)
    parents = {_parent_of(_shim_pid(executor, r.run_id)) for r in requests}
    assert parents == {server}  # not this process: no interpreter was started per rank
    for request in requests:
        (executor._files(request.run_id, 1).workdir / "go").touch()
    for request in requests:
        done = wait_until(executor, request, FINISHED, timeout=30)
        assert done.ranks[0].phase is RankPhase.SUCCEEDED
    assert all(exits.acquire(timeout=10) for _ in requests)  # the server reaped and said so


def test_a_fork_server_that_died_is_replaced(executor: LocalExecutor) -> None:
    first = launch_request([PY, "-c", "print(1)"])
    executor.launch(first)
    dead = _server_pid(executor)
    os.kill(dead, signal.SIGKILL)
    assert executor.forks._process is not None
    executor.forks._process.wait(timeout=10)  # dead before the next launch looks
    second = launch_request([PY, "-c", "print(2)"])
    executor.launch(second)
    assert _server_pid(executor) != dead
    for request in (first, second):
        done = wait_until(executor, request, FINISHED, timeout=30)
        assert done.ranks[0].phase is RankPhase.SUCCEEDED


def test_a_rank_the_server_cannot_take_starts_alone_and_once(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    """A request larger than the server's socket takes (an environment of ~1 MB) is refused
    on send; the executor then starts the shim itself, which gets the environment whole."""
    big = {f"BIG_{n}": "x" * 100_000 for n in range(10)}
    script = "import os; print('SIZE', sum(len(v) for k, v in os.environ.items() if 'BIG' in k))"
    request = launch_request([PY, "-c", script], env=big)
    exits = threading.Semaphore(0)
    executor.on_shim_exit = exits.release

    executor.launch(request)
    started_here = [child.pid for child in executor._children]  # before observe() reaps them
    done = wait_until(executor, request, FINISHED, timeout=30)

    assert done.ranks[0].phase is RankPhase.SUCCEEDED
    assert _shim_pid(executor, request.run_id) in started_here
    log = log_store.ref(request.run_id, 1, 0).path.read_text()
    assert "SIZE 1000000" in log
    assert log.count("started pid") == 1
    assert exits.acquire(timeout=10)  # its own watcher reports the exit

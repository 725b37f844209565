"""The local executor tests' helpers: launch requests, waiting (with a deadline) for what the
executor observes, and stopping ranks: a command that waits for signals, cancel called until it
is done, and the shims' session ids (for the stopping tests, with and without the sandbox)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from core.launch_request import LaunchRequest
from core.logs import LogStore
from workers.executors.base import AttemptObservation, RankPhase
from workers.executors.local import LocalExecutor

PY = sys.executable


class Gate:
    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self) -> None:
        """Let every command waiting at the gate go on."""
        self.path.touch()


def launch_request(command: list[str], attempt: int = 1, **spec: object) -> LaunchRequest:
    run_id = f"run_{os.urandom(6).hex()}"
    return LaunchRequest(run_id, "org_test", attempt, {"command": command, **spec})


def observed(executor: LocalExecutor, request: LaunchRequest) -> AttemptObservation | None:
    for seen in executor.observe():
        if (seen.run_id, seen.attempt) == (request.run_id, request.attempt):
            return seen
    return None


def wait_until(
    executor: LocalExecutor,
    request: LaunchRequest,
    done: Callable[[AttemptObservation], bool],
    timeout: float = 15.0,
) -> AttemptObservation:
    """Poll observe() (bounded) until `done` holds for the attempt."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = observed(executor, request)
        if seen is not None and done(seen):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"timed out; last observation: {observed(executor, request)}")


def all_in(*phases: RankPhase) -> Callable[[AttemptObservation], bool]:
    return lambda seen: all(rank.phase in phases for rank in seen.ranks)


FINISHED = all_in(RankPhase.SUCCEEDED, RankPhase.FAILED, RankPhase.LOST)


RUNNING = all_in(RankPhase.RUNNING)


# A command that says it is ready, then waits for signals: SIGTERM ends it.
OBEDIENT = "import signal\nprint('ready', flush=True)\nwhile True: signal.pause()\n"


def wait_until_ready(executor: LocalExecutor, log_store: LogStore, request: LaunchRequest) -> None:
    path = log_store.ref(request.run_id, request.attempt, 0).path
    wait_until(executor, request, lambda seen: RUNNING(seen) and " stdout ready" in _text(path))


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def cancel_until_done(
    executor: LocalExecutor, request: LaunchRequest, timeout: float = 10.0
) -> int:
    """Call cancel the way a reconciler does, until it says nothing is left; the call count."""
    deadline = time.monotonic() + timeout
    calls = 0
    while time.monotonic() < deadline:
        calls += 1
        if executor.cancel(request.run_id, request.attempt):
            return calls
        time.sleep(0.05)
    raise AssertionError("cancel never finished")


def shim_sessions(executor: LocalExecutor, request: LaunchRequest) -> list[int]:
    folder = executor.state_dir / "runs" / request.run_id / f"attempt-{request.attempt}"
    return [json.loads(p.read_text())["pid"] for p in folder.glob("ranks/rank-*.pid")]

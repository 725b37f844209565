"""The local executor tests' helpers: launch requests, and waiting (with a deadline) for what
the executor observes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from core.launch_request import LaunchRequest
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

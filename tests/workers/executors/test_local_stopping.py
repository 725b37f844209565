"""Stopping local ranks: cancel (SIGTERM, then SIGKILL) and cleanup.

(Time limits are the reconciler's, for every executor:
tests/workers/test_edited_limits_and_hangs.py.)

Each scenario runs twice: ranks as the worker's own processes, and inside the sandbox the
worker builds from its settings (bubblewrap, where this machine can run it; see also
tests/security/test_sandbox_signals.py for what only the sandbox adds).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.logs import LogStore
from core.runs.states import StatusReason
from core.sandbox import detect
from core.settings import SandboxMode, Settings, embedded_database_url
from tests.support.executors import (
    FINISHED,
    OBEDIENT,
    PY,
    cancel_until_done,
    launch_request,
    observed,
    shim_sessions,
    wait_until,
    wait_until_ready,
)
from workers.executors.base import RankPhase
from workers.executors.local import LocalExecutor
from workers.executors.local_attempt import session_members
from workers.executors.local_sandbox import rank_sandbox


@pytest.fixture(params=["host", "sandbox"])
def executor(
    request: pytest.FixtureRequest, tmp_path: Path, log_store: LogStore
) -> Iterator[LocalExecutor]:
    sandbox = None
    if request.param == "sandbox":
        if not detect(SandboxMode.AUTO).available:
            pytest.skip("this machine cannot run bubblewrap")
        settings = Settings(
            state_dir=tmp_path / "state", database_url=embedded_database_url(tmp_path / "state")
        )
        sandbox = rank_sandbox(settings)
        assert sandbox is not None
    made = LocalExecutor(
        tmp_path / "state", log_store, "http://api.test", grace_seconds=0.5, sandbox=sandbox
    )
    yield made
    for seen in made.observe():  # leave no process behind, whatever the test did
        made.cleanup(seen.run_id, seen.attempt)


# Says it is ready once its SIGTERM handler is in place, then waits for signals forever.
STUBBORN = (
    "import signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: print('got SIGTERM, ignoring it', flush=True))\n"
    "print('ready', flush=True)\n"
    "while True: signal.pause()\n"
)


def test_cancel_stops_a_cooperative_command_with_sigterm(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    request = launch_request([PY, "-c", OBEDIENT], compute={"processes": 2})
    executor.launch(request)
    wait_until_ready(executor, log_store, request)

    started = time.monotonic()
    cancel_until_done(executor, request)

    assert time.monotonic() - started < executor.grace_seconds  # no SIGKILL was needed
    seen = observed(executor, request)
    assert seen is not None
    assert {(r.phase, r.exit_code, r.reason) for r in seen.ranks} == {
        (RankPhase.FAILED, 128 + 15, StatusReason.USER_CANCELLED)
    }


def test_cancel_kills_a_command_that_ignores_sigterm_after_the_grace_period(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    request = launch_request([PY, "-c", STUBBORN])
    executor.launch(request)
    wait_until_ready(executor, log_store, request)
    sessions = shim_sessions(executor, request)

    started = time.monotonic()
    calls = cancel_until_done(executor, request)

    assert calls > 1
    assert time.monotonic() - started >= executor.grace_seconds
    assert not any(session_members(session) for session in sessions)
    text = log_store.ref(request.run_id, 1, 0).path.read_text()
    assert "stdout got SIGTERM, ignoring it" in text
    seen = observed(executor, request)
    assert seen is not None
    assert seen.ranks[0].reason is StatusReason.USER_CANCELLED


def test_cancel_before_launch_keeps_the_attempt_from_ever_starting(
    executor: LocalExecutor,
) -> None:
    request = launch_request([PY, "-c", "print('should never run')"])

    assert executor.cancel(request.run_id, request.attempt)
    executor.launch(request)

    assert observed(executor, request) is None


def test_cleanup_forgets_the_attempt_but_keeps_its_logs(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    request = launch_request([PY, "-c", "print('kept')"])
    executor.launch(request)
    wait_until(executor, request, FINISHED)

    executor.cleanup(request.run_id, request.attempt)
    executor.launch(request)  # a stale redelivery after cleanup must not run it again

    assert observed(executor, request) is None
    lines = log_store.ref(request.run_id, 1, 0).path.read_text().splitlines()
    assert sum(line.endswith(" stdout kept") for line in lines) == 1

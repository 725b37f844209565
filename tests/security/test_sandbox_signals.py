"""Sandboxed ranks still stop, time out, get lost and re-adopted exactly as unsandboxed ones.

The plain stopping scenarios (cancel by SIGTERM, SIGKILL after the grace period) run under the
sandbox too, in tests/workers/executors/test_local_stopping.py. Here, on the executor the
worker builds from its settings (sandbox `auto`): the proof that the command really runs inside
(another PID namespace, an unprivileged uid), and what only the sandbox changes: the grace
period through bwrap, the exit status it reports, a lost shim, re-adoption, a stop that arrives
while bwrap starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.launch_request import LaunchRequest
from core.logs import LogStore
from core.runs.states import StatusReason
from core.sandbox import detect
from core.settings import SandboxMode, Settings, embedded_database_url
from tests.factories import read_log
from tests.support.executors import (
    FINISHED,
    OBEDIENT,
    PY,
    RUNNING,
    cancel_until_done,
    launch_request,
    shim_sessions,
    wait_until,
    wait_until_ready,
)
from workers.executors.base import RankPhase
from workers.executors.local import LocalExecutor
from workers.executors.local_attempt import session_members
from workers.executors.local_sandbox import RankSandbox, rank_sandbox
from workers.executors.local_shim import ENVIRONMENT_FD, RankConfig, Shim
from workers.executors.registry import Where, executor_for

pytestmark = pytest.mark.skipif(
    not detect(SandboxMode.AUTO).available, reason="this machine cannot run bubblewrap"
)
GRACEFUL = (
    "import signal, sys, time\n"
    "def stop(*_):\n"
    "    time.sleep(0.3)\n"
    "    print('checkpoint saved', flush=True)\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "print('ready', flush=True)\n"
    "while True: signal.pause()\n"
)


@pytest.fixture
def executor(tmp_path: Path, sqlite_url: str) -> Iterator[LocalExecutor]:
    settings = Settings(
        state_dir=tmp_path / "state", database_url=sqlite_url, cancel_grace_seconds=0.5
    )
    made = executor_for(Where("local", "local"), settings)
    assert isinstance(made, LocalExecutor)
    yield made
    for seen in made.observe():
        made.cleanup(seen.run_id, seen.attempt)


@pytest.fixture
def log_store(executor: LocalExecutor) -> LogStore:
    return executor.log_store


def _commands(executor: LocalExecutor, request: LaunchRequest) -> list[int]:
    """The user's processes of every rank: session members in another PID namespace."""
    ours = os.readlink("/proc/self/ns/pid")
    found = []
    for session in shim_sessions(executor, request):
        for pid in session_members(session):
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") != ours and _uid(pid) != 0:
                    found.append(pid)
            except FileNotFoundError:
                continue
    return found


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_the_command_runs_unprivileged_in_a_pid_namespace_of_its_own(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    request = launch_request([PY, "-c", OBEDIENT], compute={"processes": 2})
    executor.launch(request)
    wait_until_ready(executor, log_store, request)

    deadline = time.monotonic() + 10
    while len(_commands(executor, request)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # bounded poll: rank 1 may still be starting after rank 0 said ready
    assert len(_commands(executor, request)) == 2
    cancel_until_done(executor, request)


def test_a_sandboxed_command_gets_its_grace_period_to_save_on_sigterm(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    request = launch_request([PY, "-c", GRACEFUL])
    executor.launch(request)
    wait_until_ready(executor, log_store, request)

    cancel_until_done(executor, request)

    assert executor.shipper is not None  # the stopped rank's log went to the database
    text = read_log(executor.shipper.archive, request.run_id, 1, 0)
    assert "stdout checkpoint saved" in text
    assert "SIGKILL" not in text


def test_a_sandboxed_rank_killed_by_sigkill_reads_as_killed(executor: LocalExecutor) -> None:
    request = launch_request([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    executor.launch(request)

    done = wait_until(executor, request, FINISHED)

    assert (done.ranks[0].exit_code, done.ranks[0].reason) == (137, StatusReason.KILLED)


def test_a_killed_shim_leaves_nothing_of_its_sandbox_running(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    request = launch_request([PY, "-c", OBEDIENT])
    executor.launch(request)
    wait_until_ready(executor, log_store, request)
    [command] = _commands(executor, request)
    [shim] = shim_sessions(executor, request)

    os.kill(shim, signal.SIGKILL)  # the shim alone: the sandbox must not outlive it
    lost = wait_until(executor, request, FINISHED)

    assert lost.ranks[0].phase is RankPhase.LOST
    deadline = time.monotonic() + 5
    while Path(f"/proc/{command}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # bounded poll: the kernel reaps it asynchronously
    assert not Path(f"/proc/{command}").exists() or _zombie(command)


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in {"Z", "X"}


def test_a_restarted_worker_readopts_and_stops_a_sandboxed_rank(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    request = launch_request([PY, "-c", OBEDIENT])
    executor.launch(request)
    wait_until_ready(executor, log_store, request)

    restarted = LocalExecutor(executor.state_dir, log_store, "http://api.test", 0.5)
    assert wait_until(restarted, request, RUNNING).ranks[0].phase is RankPhase.RUNNING
    restarted.launch(request)  # adopts: no second copy
    cancel_until_done(restarted, request)

    assert not _commands(executor, request)
    pid_files = executor.state_dir.glob(f"runs/{request.run_id}/attempt-1/ranks/*.pid")
    assert [json.loads(p.read_text()).get("pid") is not None for p in pid_files] == [True]


def sandbox_with_workdir(tmp_path: Path, run_id: str) -> tuple[RankSandbox, Path]:
    """The sandbox the worker's settings give, and a working folder given to `run_id`'s uid."""
    settings = Settings(
        state_dir=tmp_path / "state", database_url=embedded_database_url(tmp_path / "state")
    )
    sandbox = rank_sandbox(settings)
    assert sandbox is not None
    workdir = tmp_path / "state" / "work"
    sandbox.give([workdir], sandbox.uid_for(run_id))
    return sandbox, workdir


def test_a_stop_asked_while_the_sandbox_starts_reaches_the_command_once_it_runs(
    tmp_path: Path,
) -> None:
    """The shim was told to stop before bwrap had started the command (nothing to signal
    yet but bwrap itself): the SIGTERM must still reach the command, not wait out its sleep."""
    sandbox, workdir = sandbox_with_workdir(tmp_path, "run_early")
    config = RankConfig(
        run_id="run_early", attempt=1, rank=0,
        command=[PY, "-c", "import time; time.sleep(60)"],
        workdir=str(workdir), log_root=str(tmp_path / "logs"),
        pid_path=str(tmp_path / "rank.pid"), exit_path=str(tmp_path / "rank.exit"),
        sandbox=sandbox.argv(sandbox.uid_for("run_early"), [workdir], [], workdir),
    )  # fmt: skip
    shim = Shim(config, {"PATH": os.environ["PATH"]})
    shim.cancelled = True  # as if SIGTERM had come before the command was started
    previous = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    try:
        shim.run()
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert time.monotonic() - started < 10
    record = json.loads((tmp_path / "rank.exit").read_text())
    assert (record["exit_code"], record["reason"]) == (128 + 15, "user_cancelled")


def test_code_folders_are_bound_once_and_still_import_inside(tmp_path: Path) -> None:
    """A folder inside another code folder (`sys.prefix/bin` under `sys.prefix`) comes with its
    parent's bind: it is not bound again (each mount is kernel work on every rank's start), and
    the interpreter, its standard library and the venv's packages still load inside."""
    sandbox, workdir = sandbox_with_workdir(tmp_path, "run_binds")
    argv = sandbox.argv(sandbox.uid_for("run_binds"), [workdir], [], workdir)
    bound = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--ro-bind-try"]
    code = [str(p) for p in sandbox.code]
    assert all(p in bound for p in code if not any(p.startswith(f"{q}/") for q in code))
    assert not [p for p in bound if p in code and any(p.startswith(f"{q}/") for q in code)]
    environment = os.memfd_create("environment")  # bwrap's `--args`: no variables
    argv = [str(environment) if a == ENVIRONMENT_FD else a for a in argv]
    done = subprocess.run(
        [*argv, PY, "-c", "import json, sqlalchemy, pydantic; print('imported')"],
        capture_output=True, text=True, timeout=60, pass_fds=[environment], env={},
    )  # fmt: skip
    os.close(environment)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"

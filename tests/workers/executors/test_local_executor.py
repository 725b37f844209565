"""The local executor runs real commands as processes: lifecycle, ranks, adoption, loss, env."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from core.logs import LogStore
from core.runs.states import StatusReason
from core.secrets.schemas import LaunchSecrets
from tests.support.executors import (
    FINISHED,
    PY,
    RUNNING,
    Gate,
    launch_request,
    wait_until,
)
from workers.executors.base import AttemptPhase, RankPhase, classify_attempt
from workers.executors.local import LocalExecutor
from workers.executors.local_attempt import session_members
from workers.executors.local_shim import read_proc_stat

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (stdout|stderr|system) ")
# Records its pid in the folder argv[2] if given, prints, waits for the gate file argv[1], prints.
GATED = (
    "import os, sys, time\n"
    "if len(sys.argv) > 2: open(os.path.join(sys.argv[2], str(os.getpid())), 'w').close()\n"
    "print('before the gate', flush=True)\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
    "print('after the gate')\n"
)


def log_lines(store: LogStore, run_id: str, attempt: int = 1, rank: int = 0) -> list[str]:
    return store.ref(run_id, attempt, rank).path.read_text().splitlines()


def test_a_command_runs_then_succeeds_with_timestamped_logs(
    executor: LocalExecutor, log_store: LogStore, gate: Gate
) -> None:
    request = launch_request([PY, "-c", GATED, str(gate.path)])
    executor.launch(request)

    running = wait_until(executor, request, RUNNING)
    assert classify_attempt(running.ranks).phase is AttemptPhase.RUNNING
    gate.open()
    done = wait_until(executor, request, FINISHED)

    assert done.ranks[0].phase is RankPhase.SUCCEEDED
    assert done.ranks[0].exit_code == 0
    assert classify_attempt(done.ranks).reason is StatusReason.COMPLETED
    lines = log_lines(log_store, request.run_id)
    assert all(LINE.match(line) for line in lines), lines
    assert [line.split(" ", 2)[2] for line in lines if " stdout " in line] == [
        "before the gate",
        "after the gate",
    ]


def test_a_non_zero_exit_fails_with_its_exit_code(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    request = launch_request([PY, "-c", "import sys; print('oops', file=sys.stderr); sys.exit(3)"])
    executor.launch(request)

    done = wait_until(executor, request, FINISHED)

    rank = done.ranks[0]
    assert (rank.phase, rank.exit_code, rank.reason) == (
        RankPhase.FAILED,
        3,
        StatusReason.EXIT_CODE_NONZERO,
    )
    assert classify_attempt(done.ranks).phase is AttemptPhase.FAILED
    assert any(line.endswith(" stderr oops") for line in log_lines(log_store, request.run_id))


def test_each_rank_gets_the_distributed_and_platform_environment(
    executor: LocalExecutor, log_store: LogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINPORT_DATABASE_URL", "postgresql://do-not-leak")
    names = "RANK LOCAL_RANK WORLD_SIZE NODE_RANK NNODES MASTER_ADDR MASTER_PORT HF GREETING "
    names += "TRAINPORT_RUN_ID TRAINPORT_ATTEMPT TRAINPORT_TOKEN TRAINPORT_API_URL "
    names += "TRAINPORT_CHECKPOINT_DIR TRAINPORT_DATABASE_URL"
    script = f"import os\nfor n in {names.split()!r}: print(n, os.environ.get(n, '-'))"
    request = launch_request(
        [PY, "-c", script],
        env={"GREETING": "hi", "HF": {"secret": "hf-token"}},
        compute={"processes": 3},
    )
    request.env["TRAINPORT_TOKEN"] = "tok_run"
    secrets = LaunchSecrets({"hf-token": "s3cret"}, {"hf-token": "org.hf-token"})
    request = dataclasses.replace(request, secrets=secrets)
    executor.launch(request)
    done = wait_until(executor, request, FINISHED)

    assert [r.phase for r in done.ranks] == [RankPhase.SUCCEEDED] * 3
    seen = [_printed(log_lines(log_store, request.run_id, rank=r)) for r in range(3)]
    assert [env["RANK"] for env in seen] == ["0", "1", "2"]
    assert {env["MASTER_PORT"] for env in seen} == {seen[0]["MASTER_PORT"]}
    assert seen[2] | {"MASTER_PORT": "x", "TRAINPORT_CHECKPOINT_DIR": "x"} == {
        "RANK": "2", "LOCAL_RANK": "2", "WORLD_SIZE": "3", "NODE_RANK": "0", "NNODES": "1",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "x", "HF": "***", "GREETING": "hi",
        "TRAINPORT_RUN_ID": request.run_id, "TRAINPORT_ATTEMPT": "1",
        "TRAINPORT_TOKEN": "tok_run", "TRAINPORT_API_URL": "http://api.test",
        "TRAINPORT_CHECKPOINT_DIR": "x", "TRAINPORT_DATABASE_URL": "-",
    }  # fmt: skip
    assert Path(seen[0]["TRAINPORT_CHECKPOINT_DIR"]).is_dir()
    assert "s3cret" not in "".join(log_lines(log_store, request.run_id))  # redacted as printed


def _printed(lines: list[str]) -> dict[str, str]:
    pairs = (line.split(" ", 2)[2].split(" ", 1) for line in lines if " stdout " in line)
    return dict((name, value) for name, value in pairs)


def test_a_missing_secret_fails_the_launch_clearly(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    request = launch_request([PY, "-c", "print(1)"], env={"KEY": {"secret": "absent"}})
    executor.launch(request)

    done = wait_until(executor, request, FINISHED)

    assert done.ranks[0].reason is StatusReason.SYSTEM_ERROR
    assert "needs secret 'absent'" in (done.ranks[0].message or "")
    assert "needs secret 'absent'" in log_lines(log_store, request.run_id)[0]


def test_relaunching_an_attempt_adopts_it_instead_of_starting_a_copy(
    executor: LocalExecutor, log_store: LogStore, gate: Gate, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    started.mkdir()
    request = launch_request([PY, "-c", GATED, str(gate.path), str(started)])
    other_worker = LocalExecutor(executor.state_dir, log_store, "http://api.test", 0.5)

    for launcher in (executor, executor, other_worker, executor):
        launcher.launch(request)  # the first shims may not even have claimed their rank yet
    wait_until(executor, request, RUNNING)
    gate.open()
    wait_until(executor, request, FINISHED)

    assert len(list(started.iterdir())) == 1
    assert len(list(executor.state_dir.glob("runs/*/attempt-1/ranks/rank-*.pid"))) == 1
    lines = log_lines(log_store, request.run_id)
    assert sum(line.endswith(" stdout after the gate") for line in lines) == 1


def test_a_restarted_worker_readopts_a_live_rank_and_sees_it_finish(
    executor: LocalExecutor, log_store: LogStore, gate: Gate
) -> None:
    request = launch_request([PY, "-c", GATED, str(gate.path)], compute={"processes": 2})
    executor.launch(request)
    wait_until(executor, request, RUNNING)

    restarted = LocalExecutor(executor.state_dir, log_store, "http://api.test", 0.5)
    assert [r.phase for r in wait_until(restarted, request, RUNNING).ranks] == [
        RankPhase.RUNNING
    ] * 2
    restarted.launch(request)  # the redelivered launch task adopts, it does not duplicate
    gate.open()
    done = wait_until(restarted, request, FINISHED)

    assert [r.phase for r in done.ranks] == [RankPhase.SUCCEEDED] * 2


def test_a_killed_shim_is_lost_and_nothing_of_it_keeps_running(
    executor: LocalExecutor, log_store: LogStore, gate: Gate, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    started.mkdir()
    request = launch_request([PY, "-c", GATED, str(gate.path), str(started)])
    executor.launch(request)
    wait_until(executor, request, lambda seen: RUNNING(seen) and any(started.iterdir()))
    shim = _shim_pid(executor, request.run_id)

    os.killpg(shim, signal.SIGKILL)
    lost = wait_until(executor, request, FINISHED)

    assert lost.ranks[0].phase is RankPhase.LOST
    assert classify_attempt(lost.ranks).phase is AttemptPhase.SYSTEM_FAILED
    command = int(next(started.iterdir()).name)
    assert _gone(command)
    assert not session_members(shim)
    assert log_store.ref(request.run_id, 1, 0).finished  # followers of its log stop


def _shim_pid(executor: LocalExecutor, run_id: str, rank: int = 0) -> int:
    pid_file = executor.state_dir / "runs" / run_id / "attempt-1" / "ranks" / f"rank-{rank}.pid"
    return int(json.loads(pid_file.read_text())["pid"])


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = read_proc_stat(pid)
        if stat is None or stat[0] in {"Z", "X"}:
            return True
        time.sleep(0.01)
    return False

"""The local executor's launchers (issue 14), and how it names a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from core.logs import LogStore
from tests.support.executors import PY, launch_request, wait_until
from workers.executors.base import RankPhase
from workers.executors.local import LocalExecutor
from workers.executors.local_shim import oom_kills

FINISHED = lambda seen: all(r.phase in {RankPhase.SUCCEEDED, RankPhase.FAILED} for r in seen.ranks)  # noqa: E731
# One write a line: torchrun's ranks share its stdout, and with PYTHONUNBUFFERED (every rank
# has it) print() writes each word on its own, so two ranks' words could interleave in a line.
SHOW = (
    "import os; e = os.environ.get; "
    "os.write(1, f\"ENV {e('RANK', '-')} {e('WORLD_SIZE', '-')}\\n\".encode())"
)


def printed(log_store: LogStore, run_id: str, rank: int = 0) -> list[str]:
    lines = log_store.ref(run_id, 1, rank).path.read_text().splitlines()
    return sorted(line.split(" stdout ", 1)[1] for line in lines if " stdout ENV" in line)


def test_launcher_none_starts_one_process_without_distributed_variables(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    request = launch_request([PY, "-c", SHOW], launcher="none")
    executor.launch(request)
    done = wait_until(executor, request, FINISHED)
    assert [r.phase for r in done.ranks] == [RankPhase.SUCCEEDED]
    assert printed(log_store, request.run_id) == ["ENV - -"]


def test_launcher_torchrun_runs_torchrun_once_and_it_starts_the_ranks(
    executor: LocalExecutor, log_store: LogStore
) -> None:
    request = launch_request([PY, "-c", SHOW], launcher="torchrun", compute={"processes": 2})
    executor.launch(request)
    done = wait_until(executor, request, FINISHED, timeout=120)
    assert [r.phase for r in done.ranks] == [RankPhase.SUCCEEDED], log_store.ref(
        request.run_id, 1, 0
    ).path.read_text()
    assert printed(log_store, request.run_id) == ["ENV 0 2", "ENV 1 2"]  # one log, both ranks


def test_a_sigkill_that_the_oom_killer_did_not_send_is_killed(
    executor: LocalExecutor, log_store: LogStore, tmp_path: Path
) -> None:
    marker = tmp_path / "pid"
    script = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    request = launch_request([PY, "-c", script])
    executor.launch(request)
    wait_until(executor, request, lambda seen: marker.exists() and marker.read_text() != "")
    os.kill(int(marker.read_text()), signal.SIGKILL)
    done = wait_until(executor, request, FINISHED)
    [rank] = done.ranks
    assert (rank.phase, rank.reason, rank.exit_code) == (RankPhase.FAILED, "killed", 137)
    assert "not by the kernel's OOM killer" in (rank.message or "")


def test_the_oom_kill_counter_is_read_from_the_cgroup_v2_or_v1_files(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/runs/a\n")
    (tmp_path / "fs" / "runs" / "a").mkdir(parents=True)
    events = tmp_path / "fs" / "runs" / "a" / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
    assert oom_kills(proc, tmp_path / "fs") == 2
    proc.write_text("4:memory:/host/path/not/mounted\n0::/\n")
    (tmp_path / "fs" / "memory").mkdir()
    (tmp_path / "fs" / "memory" / "memory.oom_control").write_text("under_oom 0\noom_kill 7\n")
    assert oom_kills(proc, tmp_path / "fs") == 7  # the container's own cgroup, at the mount
    proc.write_text(json.dumps("nothing"))
    assert oom_kills(proc, tmp_path / "fs") is None

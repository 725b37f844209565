"""A run's `env` reaches its command inside the sandbox, and nothing that runs outside it.

The shim (the worker's user, outside the sandbox), `nsenter` and `bwrap` (root, outside it until
bwrap has built it) used to run with the rank's whole environment, the spec's `env` included:
`PYTHONPATH` pointed the shim's interpreter at the run's own `json.py`, and `LD_PRELOAD` had the
dynamic loader run the run's own library in all three, with the worker's privileges, on the
host. Now the shim starts clean, reads the rank's environment from a descriptor, and hands it to
bwrap the same way (`--args`), which sets it for the command alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.launch_request import LaunchRequest
from core.settings import Settings
from tests.factories import read_log
from tests.support.executors import FINISHED, RUNNING, wait_until
from workers.executors.base import RankPhase
from workers.executors.local import LocalExecutor
from workers.executors.local_attempt import read_json
from workers.executors.registry import Where, executor_for

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

PRELOAD_SOURCE = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void escaped(void) {
    int fd = open("MARKER", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { write(fd, "escaped\n", 8); close(fd); }
}
"""


@pytest.fixture
def sandboxed(tmp_path: Path, sqlite_url: str) -> Iterator[LocalExecutor]:
    settings = Settings(state_dir=tmp_path / "state", database_url=sqlite_url)
    executor = executor_for(Where("local", "local"), settings)
    assert isinstance(executor, LocalExecutor)
    assert executor.sandbox is not None
    yield executor
    for seen in executor.observe():
        executor.cleanup(seen.run_id, seen.attempt)


def _request(command: list[str], env: dict[str, str]) -> LaunchRequest:
    spec = {"command": command, "env": env}
    return LaunchRequest(f"run_{os.urandom(6).hex()}", "org_b", 1, spec, {})


def _log(executor: LocalExecutor, request: LaunchRequest) -> str:
    """Rank 0's log: in the spool while the rank runs, in the database once it is shipped."""
    spool = executor.log_store.ref(request.run_id, 1, 0).path
    if spool.exists():
        return spool.read_text()
    assert executor.shipper is not None
    return read_log(executor.shipper.archive, request.run_id, 1, 0)


def test_the_runs_pythonpath_never_reaches_the_shims_interpreter(
    sandboxed: LocalExecutor, tmp_path: Path
) -> None:
    planted, marker = tmp_path / "planted", tmp_path / "escaped-json"
    planted.mkdir()
    hostile = f"open({str(marker)!r}, 'a').write('escaped\\n')\nfrom _json import *\n"
    for name in ("json", "subprocess", "threading", "pathlib", "contextlib"):
        (planted / f"{name}.py").write_text(hostile.replace("_json", f"_{name}_gone"))
    _assert_only_the_command_sees(sandboxed, "PYTHONPATH", str(planted), marker)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler for the library")
def test_the_runs_ld_preload_never_runs_outside_the_sandbox(
    sandboxed: LocalExecutor, tmp_path: Path
) -> None:
    marker, library = tmp_path / "escaped-preload", tmp_path / "libescape.so"
    source = tmp_path / "escape.c"
    source.write_text(PRELOAD_SOURCE.replace("MARKER", str(marker)))
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    _assert_only_the_command_sees(sandboxed, "LD_PRELOAD", str(library), marker)


def _assert_only_the_command_sees(
    executor: LocalExecutor, name: str, value: str, marker: Path
) -> None:
    """A rank whose `env` sets `name`: nothing outside the sandbox acted on it (no `marker`),
    and the command inside still got it."""
    request = _request(
        [sys.executable, "-c", f"import os; print('SEEN', os.environ[{name!r}])"], {name: value}
    )

    executor.launch(request)
    done = wait_until(executor, request, FINISHED, timeout=30)

    assert not marker.exists(), f"the run's {name} ran its own code outside the sandbox"
    assert done.ranks[0].phase is RankPhase.SUCCEEDED, _log(executor, request)
    assert f"SEEN {value}" in _log(executor, request)


def test_no_process_outside_the_sandbox_holds_the_runs_environment(
    sandboxed: LocalExecutor, tmp_path: Path
) -> None:
    """Read from /proc while the rank runs: the shim and the process it started (nsenter or
    bwrap, outside the namespaces) carry none of the spec's variables; the command has them."""
    ready = "import os, time; print('SEEN=' + os.environ['RUN_ONLY_VARIABLE'], flush=True)"
    request = _request(
        [sys.executable, "-c", ready + "; time.sleep(60)"],
        {"RUN_ONLY_VARIABLE": "value-only-the-command-sees", "LD_LIBRARY_PATH": str(tmp_path)},
    )
    sandboxed.launch(request)
    wait_until(sandboxed, request, RUNNING, timeout=30)
    deadline = time.monotonic() + 30
    seen = "SEEN=value-only-the-command-sees"  # not in the log's command line: from its env
    while seen not in _log(sandboxed, request) and time.monotonic() < deadline:  # bounded
        time.sleep(0.05)
    files = sandboxed._files(request.run_id, 1)
    identity = read_json(files.rank_file(0, "pid"))
    assert identity is not None
    shim = int(identity["pid"])
    outside = [shim, *_children(shim)]
    for pid in outside:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"RUN_ONLY_VARIABLE" not in environ, _command_line(pid)
        assert b"LD_LIBRARY_PATH" not in environ, _command_line(pid)
    assert seen in _log(sandboxed, request)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def _command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

"""A shipped code snapshot inside the sandbox: unpacked into the attempt's own folder, handed
to the run's uid, the rank starts in `working_dir` and writes next to its code; a snapshot
whose bytes are not its digest never starts."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.launch_request import CodeToRun, LaunchRequest
from core.logs import LogStore
from core.settings import Settings, embedded_database_url
from tests.support.executors import FINISHED, wait_until
from workers.executors.base import RankPhase
from workers.executors.local import LocalExecutor
from workers.executors.local_sandbox import rank_sandbox

SCRIPT = b"""\
import os, pathlib
print("config", pathlib.Path("configs/lr.txt").read_text().strip(), "uid", os.getuid())
pathlib.Path("out").mkdir()
pathlib.Path("out/log.txt").write_text("written next to the code")
print("wrote", pathlib.Path("out/log.txt").resolve())
"""


def snapshot(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def sandboxed(tmp_path: Path) -> Iterator[LocalExecutor]:
    state = tmp_path / "state"
    sandbox = rank_sandbox(Settings(state_dir=state, database_url=embedded_database_url(state)))
    if sandbox is None:
        pytest.skip("bubblewrap is not usable here")
    # No log archive: the rank's log stays in the spool file this test reads.
    executor = LocalExecutor(state, LogStore(state / "logs"), "http://api.test", 0.5, sandbox)
    yield executor
    for seen in executor.observe():
        executor.cleanup(seen.run_id, seen.attempt)


def request_for(data: bytes, digest: str) -> LaunchRequest:
    spec = {"command": [sys.executable, "train.py"], "working_dir": "src"}
    code = CodeToRun(digest, "src", lambda: iter([data]))
    return LaunchRequest("run_" + os.urandom(6).hex(), "org_c", 1, spec, code=code)


def test_the_rank_runs_its_snapshot_as_its_own_uid(
    sandboxed: LocalExecutor, tmp_path: Path
) -> None:
    data = snapshot({"src/train.py": SCRIPT, "src/configs/lr.txt": b"0.003\n"})
    request = request_for(data, "sha256:" + hashlib.sha256(data).hexdigest())
    sandboxed.launch(request)
    done = wait_until(sandboxed, request, FINISHED, timeout=30)
    log = LogStore(tmp_path / "state" / "logs").ref(request.run_id, 1, 0).path.read_text()
    assert done.ranks[0].phase is RankPhase.SUCCEEDED, log
    assert "config 0.003" in log
    assert sandboxed.sandbox is not None
    assert f"uid {sandboxed.sandbox.uid_for(request.run_id)}" in log
    work = tmp_path / "state" / "runs" / request.run_id / "attempt-1" / "work"
    assert f"wrote {work / 'src' / 'out' / 'log.txt'}" in log


def test_a_snapshot_that_is_not_its_digest_never_starts(
    sandboxed: LocalExecutor, tmp_path: Path
) -> None:
    data = snapshot({"src/train.py": b"print('tampered')\n"})
    request = request_for(data, "sha256:" + "00" * 32)
    sandboxed.launch(request)
    done = wait_until(sandboxed, request, FINISHED, timeout=30)
    log = LogStore(tmp_path / "state" / "logs").ref(request.run_id, 1, 0).path.read_text()
    assert done.ranks[0].phase is RankPhase.FAILED
    assert "cannot unpack code snapshot" in log
    assert "stdout tampered" not in log

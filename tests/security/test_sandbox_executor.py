"""The local executor's sandbox, tested on the executor itself: a hostile rank reaches nothing.

An org-B rank runs the probe (tests/security/sandbox_probe.py) beside a state folder laid out
as the platform lays it out: org A's run folder, checkpoints, dataset files and logs, the
SQLite database, and a platform process whose environment holds the secret key. The executor
is the one the worker builds from its settings (`executor_for`), with the sandbox on `auto`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.launch_request import LaunchRequest
from core.settings import Settings
from tests.factories import read_log
from tests.security.sandbox_probe import assert_contained, probe_command, probe_result, reached
from tests.support.executors import FINISHED, wait_until
from workers.executors.base import RankPhase
from workers.executors.local import LocalExecutor
from workers.executors.registry import Where, executor_for

CANARY = "canary-secret-key-3f9a1c"


@pytest.fixture
def platform_process() -> Iterator[int]:
    """A stand-in for the API or worker: a process whose environment holds platform secrets."""
    env = {
        "PATH": os.environ["PATH"],
        "TRAINPORT_SECRET_KEY": CANARY,
        "TRAINPORT_DATABASE_URL": "postgresql://trainport:hunter2@db/trainport",
    }
    sleeper = "import time  # sleeper\ntime.sleep(120)"
    process = subprocess.Popen([sys.executable, "-c", sleeper], env=env)
    yield process.pid
    process.kill()
    process.wait()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _org_a_layout(state: Path) -> dict[str, Path]:
    """What org A left in the state folder, as the platform lays it out."""
    storage = state / "storage" / "orgs" / "org_a"
    return {
        "org A's workdir": _write(state / "runs/run_a/attempt-1/work/notes.txt", "org A notes"),
        "org A's checkpoint": _write(storage / "runs/run_a/checkpoints/step-1/model.bin", "w"),
        "org A's dataset": _write(storage / "datasets/dst_a/upl_a/train.txt", "org A data"),
        "org A's log": _write(state / "logs/run_a/attempt-1/rank-0.log", "org A log"),
    }


def _org_b_request(state: Path, targets: dict[str, Any]) -> LaunchRequest:
    run_id = f"run_{os.urandom(6).hex()}"
    storage = state / "storage" / "orgs" / "org_b"
    dataset = _write(storage / "datasets/dst_b/upl_b/train.txt", "org B data\n").parent
    env = {
        "TRAINPORT_CHECKPOINT_URI": (storage / f"runs/{run_id}/checkpoints").as_uri() + "/",
        "TRAINPORT_DATASETS": json.dumps(
            {"mine": {"digest": "sha256:" + "0" * 64, "uri": dataset.as_uri() + "/"}}
        ),
        "TRAINPORT_CACHE_DIR": str(state / "cache"),
    }
    spec = {"command": probe_command(sys.executable, targets)}
    return LaunchRequest(run_id, "org_b", 1, spec, env)


@pytest.fixture
def sandboxed(tmp_path: Path, sqlite_url: str) -> Iterator[LocalExecutor]:
    settings = Settings(state_dir=tmp_path / "state", database_url=sqlite_url)
    executor = executor_for(Where("local", "local"), settings)
    assert isinstance(executor, LocalExecutor)
    yield executor
    for seen in executor.observe():
        executor.cleanup(seen.run_id, seen.attempt)


def test_an_org_b_rank_reaches_nothing_of_the_platform_or_org_a(
    sandboxed: LocalExecutor, tmp_path: Path, platform_process: int
) -> None:
    state = tmp_path / "state"
    foreign = _org_a_layout(state)
    database = _write(state / "trainport.db", "SQLite format 3\0 org A's rows")
    targets = {
        "canaries": [CANARY, "hunter2"],
        "database": str(database),
        "state_dir": str(state),
        "storage_dir": str(state / "storage"),
        "log_dir": str(state / "logs"),
        "foreign": {label: str(path) for label, path in foreign.items()},
    }
    request = _org_b_request(state, targets)
    dataset_file = state / "storage/orgs/org_b/datasets/dst_b/upl_b/train.txt"

    sandboxed.launch(request)
    done = wait_until(sandboxed, request, FINISHED, timeout=30)

    log = stored(sandboxed, request.run_id)
    assert done.ranks[0].phase is RankPhase.SUCCEEDED, log
    found = probe_result(log)
    assert reached(found) == {}
    assert_contained(found)
    assert dataset_file.read_text() == "org B data\n"
    assert sorted(p.name for p in dataset_file.parent.iterdir()) == ["train.txt"]


def test_a_sandboxed_rank_runs_the_workers_interpreter_with_our_packages(
    sandboxed: LocalExecutor, tmp_path: Path
) -> None:
    script = "import sys, trainport.recipes.lm; print('PREFIX', sys.prefix, sys.base_prefix)"
    request = LaunchRequest("run_" + os.urandom(6).hex(), "org_b", 1, {"command": [
        sys.executable, "-c", script]})  # fmt: skip

    sandboxed.launch(request)
    done = wait_until(sandboxed, request, FINISHED, timeout=30)

    log = stored(sandboxed, request.run_id)
    assert done.ranks[0].phase is RankPhase.SUCCEEDED, log
    assert f"stdout PREFIX {sys.prefix} {sys.base_prefix}" in log


def stored(executor: LocalExecutor, run_id: str) -> str:
    """Rank 0's log of attempt 1, as the worker stored it in the database."""
    assert executor.shipper is not None
    return read_log(executor.shipper.archive, run_id, 1, 0)

"""Fixtures for executor tests: an executor over a temporary state folder, and a gate.

A gate is a file the test creates when it wants a waiting command to go on, so tests hold a
process in `running` for as long as they need and the test itself never sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.logs import LogStore
from tests.support.executors import Gate
from workers.executors.local import LocalExecutor


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    return Gate(tmp_path / "gate")


@pytest.fixture
def log_store(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "logs")


@pytest.fixture
def executor(tmp_path: Path, log_store: LogStore) -> Iterator[LocalExecutor]:
    made = LocalExecutor(tmp_path / "state", log_store, "http://api.test", grace_seconds=0.5)
    yield made
    for seen in made.observe():  # leave no process behind, whatever the test did
        made.cleanup(seen.run_id, seen.attempt)

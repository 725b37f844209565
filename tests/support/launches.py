"""Runs whose launch the test holds: an API on a test database, a command gated on a file, a
launch that waits on its attempt's lock (a pytest-free helper module for the workers' tests).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from core import db
from core.models import TaskDelivery
from core.outbox import Task
from core.settings import Settings
from workers.executors.local_attempt import AttemptFiles

PY = sys.executable


@contextmanager
def api(database_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=database_url, key_touch_interval_seconds=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def gated_command(marker: Path, gate: Path) -> list[str]:
    """Appends its pid to `marker`, then waits (bounded) until the test opens `gate`."""
    body = (
        "import os, time, pathlib\n"
        f"with open({str(marker)!r}, 'a') as out: out.write(f'{{os.getpid()}}\\n')\n"
        f"gate = pathlib.Path({str(gate)!r})\n"
        "deadline = time.monotonic() + 60\n"
        "while not gate.exists() and time.monotonic() < deadline: time.sleep(0.02)\n"
    )
    return [PY, "-c", body]


def launch_deliveries(url: str, run_id: str, at_least: int = 1, timeout: float = 30.0) -> int:
    """Bounded poll: how often attempt 1's launch was delivered, once it is `at_least`."""
    engine = db.build_engine(Settings(database_url=url))
    query = select(TaskDelivery.deliveries).where(
        TaskDelivery.task == Task.LAUNCH.value, TaskDelivery.run_id == run_id
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with db.session_scope(db.make_sessionmaker(engine)) as session:
                count = int(session.scalar(query) or 0)
            if count >= at_least:
                return count
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError(f"the launch of {run_id} was not delivered {at_least} time(s)")


@contextmanager
def launch_held(state: Path, run_id: str) -> Iterator[None]:
    """Hold attempt 1's lock: its launch, once delivered, waits here before starting anything."""
    with AttemptFiles(state.resolve() / "runs" / run_id, 1).locked():
        yield


def held_launch_settings(queue: str, state: Path, grace: float) -> dict[str, Any]:
    # Neither worker re-drives a launch on its own: only the broker's delivery can finish it.
    return {
        "celery_queue": queue,
        "state_dir": state,
        "launch_grace_seconds": 3600,
        "worker_shutdown_grace_seconds": grace,
    }

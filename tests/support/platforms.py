"""A real worker process tree for the tests, and waiting for what it does (a pytest plugin).

`start_platform` runs `python -m workers.embedded` (Celery worker, beat and relay) as a
subprocess on a database of the test's own (tests/support/databases.py) with real Redis as the
broker, each platform on a queue of its own, exactly as it runs in production. Registered for
the whole suite by tests/conftest.py; nothing starts until a test asks for a platform.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.logs import LogStore
from core.settings import Settings
from tests.factories import Tenant
from tests.support.postgres import clone_database, database_url, drop_database
from tests.support.servers import ROOT
from workers.executors.local import LocalExecutor

REDIS_URL = os.environ.get("TRAINPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
READY_TIMEOUT_S = 30.0


@dataclass
class Platform:
    """`python -m workers.embedded` running as its own process group."""

    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9 the whole tree (worker, beat, relay), as a crashed machine would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


StartPlatform = Callable[..., Platform]


def platform_env(database_url: str, state_dir: Path, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env.update(
        TRAINPORT_DATABASE_URL=database_url,
        TRAINPORT_BROKER_URL=REDIS_URL,
        TRAINPORT_CELERY_QUEUE=f"test-{secrets.token_hex(4)}",
        TRAINPORT_STATE_DIR=str(state_dir),
        TRAINPORT_LOCAL_CPU_SLOTS="4",
        TRAINPORT_RECONCILE_INTERVAL_SECONDS="0.3",
        TRAINPORT_CANCEL_GRACE_SECONDS="2",
        TRAINPORT_LOG_LEVEL="INFO",
        # These tests watch commands through marker files in their tmp_path and host pids,
        # which a sandboxed rank cannot see; tests/security/ runs platforms sandboxed.
        TRAINPORT_SANDBOX="off",
    )
    env.update({f"TRAINPORT_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def _wait_ready(platform: Platform) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:  # bounded poll: Celery says "ready." in its log
        if platform.process.poll() is not None:
            raise RuntimeError(f"the worker exited early:\n{platform.log_text()}")
        if " ready." in platform.log_text():
            return
        time.sleep(0.05)
    raise RuntimeError(f"the worker was not ready in {READY_TIMEOUT_S}s:\n{platform.log_text()}")


class Platforms:
    """Starts worker trees on databases, and stops (or kills) them all at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Platform] = []

    def start(self, database_url: str, **settings: Any) -> Platform:
        settings.setdefault("state_dir", self.folder / "state")
        env = platform_env(database_url, Path(settings.pop("state_dir")), **settings)
        log = self.folder / f"platform-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "workers.embedded", "--no-migrate", "--concurrency", "4"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        platform = Platform(process, log)
        self.started.append(platform)
        _wait_ready(platform)
        return platform

    def stop_all(self) -> None:
        for platform in self.started:
            platform.stop()
        state = self.folder / "state"
        leftovers = LocalExecutor(state, LogStore(state / "logs"), "")
        for seen in leftovers.observe():  # never leave a training process behind
            leftovers.cleanup(seen.run_id, seen.attempt)


@pytest.fixture
def start_platform(tmp_path: Path) -> Iterator[StartPlatform]:
    platforms = Platforms(tmp_path)
    yield platforms.start
    platforms.stop_all()


@dataclass(frozen=True)
class Shared:
    client: TestClient
    database_url: str
    platform: Platform


@pytest.fixture(scope="module")
def shared_platform(template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One database, one worker tree and one API client for a whole module."""
    name = clone_database(template_db)
    url = database_url(name)
    platforms = Platforms(tmp_path_factory.mktemp("platform"))
    app = create_app(Settings(database_url=url, key_touch_interval_seconds=0))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Shared(client, url, platforms.start(url))
    finally:
        platforms.stop_all()
        drop_database(name)


def wait_for_run(
    client: TestClient,
    tenant: Tenant,
    run_id: str,
    statuses: set[str],
    timeout: float = 30.0,
    wait: int = 5,
) -> dict[str, Any]:
    """Long-poll the run until it reaches `statuses`. On PostgreSQL the API wakes on the
    worker's NOTIFY; SQLite has no cross-process wake-up, so there pass a short `wait`."""
    deadline = time.monotonic() + timeout
    version = 0
    while True:
        response = client.get(
            f"/v1/runs/{run_id}",
            params={"wait": wait, "resource_version": version},
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        if run["status"] in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run stayed {run['status']}: {run['status_message']}")
        version = run["resource_version"]


def wait_for_file(path: Path, lines: int = 1, timeout: float = 30.0) -> list[str]:
    """Bounded poll for a marker file a command writes (no event crosses that boundary)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(found := path.read_text().splitlines()) >= lines:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{path} never got {lines} line(s)")

"""Logs outlive the worker that wrote them and reach every API replica (issue 13, finding 3).

In production the API and the workers run in pods with state folders of their own (an
`emptyDir` each): nothing on a worker's disk is visible to an API replica, and it is gone when
the pod is. So here every process has a state folder of its own, as there: the worker is built
as a worker builds it (`executor_for` from settings), the two API replicas are two apps, and
the worker that dies is a real process killed with SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.launch_request import LaunchRequest
from core.logs import LogKey
from core.settings import Settings
from tests.factories import Tenant, create_run, log_archive, make_tenant
from workers.executors.base import AttemptObservation, RankPhase
from workers.executors.registry import Where, executor_for

ROOT = Path(__file__).resolve().parents[3]
LINES = 200
# Prints LINES numbered lines, 10 ms apart: about two seconds of output to kill a worker in.
COUNTING = (
    "import time\n"
    f"for i in range({LINES}):\n"
    "    print(f'line {i:03d}', flush=True)\n"
    "    time.sleep(0.01)\n"
)
# A worker process: builds its executor from settings, launches the attempt when told to, then
# observes it (shipping its log, as a worker's reconcile passes do) until it has ended.
WORKER = """
import sys, time
from core.settings import get_settings
from core.launch_request import LaunchRequest
from workers.executors.registry import Where, executor_for
run_id, org_id, command = sys.argv[1], sys.argv[2], sys.argv[3:]
executor = executor_for(Where("local", "local"), get_settings())
if command:
    executor.launch(LaunchRequest(run_id, org_id, 1, {"command": command}))
while True:
    seen = [s for s in executor.observe() if s.run_id == run_id]
    if seen and all(r.phase.value == "succeeded" for r in seen[0].ranks):
        break
    time.sleep(0.05)
"""


def replica(postgres_url: str, state: Path) -> TestClient:
    settings = Settings(database_url=postgres_url, key_touch_interval_seconds=0, state_dir=state)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    with (
        replica(postgres_url, tmp_path / "api-a") as a,
        replica(postgres_url, tmp_path / "api-b") as b,
    ):
        yield a, b


def worker_settings(postgres_url: str, state: Path) -> dict[str, str]:
    return {
        "TRAINPORT_DATABASE_URL": postgres_url,
        "TRAINPORT_STATE_DIR": str(state),
        "TRAINPORT_SANDBOX": "off",
    }


def texts(body: str) -> list[str]:
    return [line.split(" ", 2)[2] for line in body.splitlines() if " stdout " in line]


def test_every_replica_serves_the_log_a_worker_with_its_own_state_folder_wrote(
    replicas: tuple[TestClient, TestClient],
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = replicas
    tenant = make_tenant(a)
    run = create_run(a, tenant)
    worker_state = tmp_path / "worker"
    for name, value in worker_settings(postgres_url, worker_state).items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # from the environment, as the worker process reads it
    executor = executor_for(Where("local", "local"), settings)
    command = [sys.executable, "-c", "print('hello from the worker'); print('bye')"]
    executor.launch(LaunchRequest(run["id"], tenant.org_id, 1, {"command": command}))
    _wait_for(lambda: _phase(executor.observe(), run["id"]) is RankPhase.SUCCEEDED)
    executor.cleanup(run["id"], 1)
    shutil.rmtree(worker_state)  # the worker's pod is gone, and its emptyDir with it

    for api in (a, b):
        response = api.get(f"/v1/runs/{run['id']}/logs", headers=tenant.headers)
        assert response.status_code == 200, response.text
        assert texts(response.text) == ["hello from the worker", "bye"]


def test_a_worker_killed_mid_run_loses_no_line_and_stores_none_twice(
    replicas: tuple[TestClient, TestClient], postgres_url: str, tmp_path: Path
) -> None:
    a, b = replicas
    tenant = make_tenant(a)
    run = create_run(a, tenant)
    key = LogKey(run["id"], 1, 0)
    archive = log_archive(postgres_url)
    env = {**os.environ, **worker_settings(postgres_url, tmp_path / "worker")}
    command = [sys.executable, "-c", COUNTING]
    first = _start_worker(env, tenant, run["id"], command)
    try:
        _wait_for(lambda: archive.head(key).size > 2_000)  # some lines are stored, not all
    finally:
        first.send_signal(signal.SIGKILL)  # mid-append, perhaps: the rank goes on alone
        first.wait()
    assert not archive.head(key).finished

    second = _start_worker(env, tenant, run["id"], [])  # the restarted worker adopts the rank
    assert second.wait(timeout=60) == 0

    assert archive.head(key).finished
    for api in (a, b):
        response = api.get(f"/v1/runs/{run['id']}/logs", headers=tenant.headers)
        assert texts(response.text) == [f"line {i:03d}" for i in range(LINES)]


def _start_worker(
    env: dict[str, str], tenant: Tenant, run_id: str, command: list[str]
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", WORKER, run_id, tenant.org_id, *command]
    return subprocess.Popen(argv, cwd=ROOT, env=env)


def _phase(observed: list[AttemptObservation], run_id: str) -> RankPhase | None:
    seen = [s for s in observed if s.run_id == run_id]
    return seen[0].ranks[0].phase if seen else None


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)  # bounded poll: other processes' progress has no event to wait on

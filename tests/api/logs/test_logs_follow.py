"""Following a live run's log over real HTTP: a uvicorn process serves, a real rank writes.

The API process has a state folder of its own, as a replica on another machine (or pod) would:
what it serves comes from the database, where the worker ships the rank's output.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from core.launch_request import LaunchRequest
from core.logs import LogKey, LogStore
from tests.factories import create_run, log_archive, make_tenant
from workers.executors.base import RankPhase
from workers.executors.local import LocalExecutor

ROOT = Path(__file__).resolve().parents[3]
# Prints, waits for the gate file argv[1] (which the test creates only after it has received
# the first line through the API), then prints again and exits.
GATED = (
    "import os, sys, time\n"
    "print('first', flush=True)\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
    "print('second', flush=True)\n"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API in its own uvicorn process: the same database, a state folder of its own."""
    port = _free_port()
    state = tmp_path_factory.mktemp("api-replica")
    env = {**os.environ, "TRAINPORT_DATABASE_URL": postgres_url, "TRAINPORT_STATE_DIR": str(state)}
    command = [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)  # bounded poll: a port has no "ready" event to wait on
    raise AssertionError("the API process did not come up")


def test_follow_streams_lines_as_the_rank_writes_them_and_ends_with_the_attempt(
    server: str, client: TestClient, postgres_url: str, tmp_path: Path
) -> None:
    tenant = make_tenant(client)
    run = create_run(client, tenant)
    archive = log_archive(postgres_url)
    spool = LogStore(tmp_path / "worker-logs")
    executor = LocalExecutor(tmp_path / "state", spool, server, grace_seconds=0.5, archive=archive)
    gate = tmp_path / "gate"
    spec = {"command": [sys.executable, "-c", GATED, str(gate)]}
    executor.launch(LaunchRequest(run["id"], tenant.org_id, 1, spec))
    _wait_for(lambda: archive.head(LogKey(run["id"], 1, 0)).size > 0)  # its first line is stored

    received = []
    url = f"{server}/v1/runs/{run['id']}/logs"
    params = {"follow": "true"}
    with httpx.stream("GET", url, params=params, headers=tenant.headers, timeout=15) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            received.append(line.split(" ", 2)[1:])
            if received[-1] == ["stdout", "first"]:
                gate.touch()  # the rank prints "second" only now: the stream is live

    texts = [text for stream, text in received if stream == "stdout"]
    assert texts == ["first", "second"]
    assert received[-1] == ["system", "exited with code 0"]
    _wait_for(lambda: _phase(executor, run["id"]) is RankPhase.SUCCEEDED)
    executor.cleanup(run["id"], 1)
    assert not spool.root.exists() or not list(spool.streams())  # shipped, then removed here


def _phase(executor: LocalExecutor, run_id: str) -> RankPhase:
    [seen] = [s for s in executor.observe() if s.run_id == run_id]
    return seen.ranks[0].phase


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)

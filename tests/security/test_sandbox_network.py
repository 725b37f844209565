"""A sandboxed rank reaches the API and its own attempt's peers, and nothing else on the host.

The API is served for real (uvicorn on a loopback port, over the session's PostgreSQL); an
org-B rank, launched by the executor the worker builds from its settings, tries PostgreSQL
(127.0.0.1:5432), Redis (127.0.0.1:6379) and a port this test listens on, then calls the API
URL it was given: `/healthz` and its own run with its run token must answer. Two ranks of one
attempt still meet over 127.0.0.1:MASTER_PORT (a gloo all_reduce), and the attempt's network
namespace is gone after cleanup, also when a restarted worker cleans up.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from core.launch_request import LaunchRequest
from core.logs import LogStore
from core.sandbox import detect
from core.settings import SandboxMode, Settings, embedded_database_url
from tests.factories import Tenant, create_run
from tests.support.executors import FINISHED, RUNNING, wait_until
from tests.support.training import start
from workers.executors.base import RankPhase
from workers.executors.local import LocalExecutor
from workers.executors.local_netns import NETNS_DIR, namespace_name
from workers.executors.local_sandbox import rank_sandbox

pytestmark = pytest.mark.skipif(
    not detect(SandboxMode.AUTO).isolates_network,
    reason="this machine cannot give ranks their own network namespace (needs root and ip)",
)

NET_PROBE = r"""
import json, os, socket, sys, urllib.error, urllib.request

targets = json.loads(sys.argv[1])

def tcp(port):
    probe = socket.socket()
    probe.settimeout(2)
    try:
        return probe.connect_ex(("127.0.0.1", port)) == 0
    finally:
        probe.close()

def get(path, token=None):
    request = urllib.request.Request(os.environ["TRAINPORT_API_URL"].rstrip("/") + path)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:
        return repr(error)

found = {name: tcp(port) for name, port in targets.items()}
found["healthz"] = get("/healthz")
found["own run"] = get("/v1/runs/" + os.environ["TRAINPORT_RUN_ID"],
                       os.environ["TRAINPORT_RUN_TOKEN"])
print("NETPROBE " + json.dumps(found), flush=True)
"""

ALL_REDUCE = (
    "import torch, torch.distributed as dist\n"
    "dist.init_process_group('gloo')\n"
    "total = torch.tensor([dist.get_rank() + 1.0])\n"
    "dist.all_reduce(total)\n"
    "print('SUM', int(total.item()), flush=True)\n"
    "dist.destroy_process_group()\n"
)


@pytest.fixture
def api_url(app: FastAPI, client: TestClient) -> Iterator[str]:
    """The session's app served over HTTP on a loopback port, as the platform serves it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:  # bounded: uvicorn binds first
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def listener() -> Iterator[int]:
    """A service of the host that no run should reach: a port this test listens on."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _executor(state: Path, api_url: str) -> LocalExecutor:
    settings = Settings(state_dir=state, database_url=embedded_database_url(state))
    executor = LocalExecutor(state, LogStore(state / "logs"), api_url, 0.5, rank_sandbox(settings))
    return executor


@pytest.fixture
def executor(tmp_path: Path, api_url: str) -> Iterator[LocalExecutor]:
    made = _executor(tmp_path / "state", api_url)
    yield made
    for seen in made.observe():
        made.cleanup(seen.run_id, seen.attempt)


def _started_run(app: FastAPI, client: TestClient, tenant: Tenant) -> tuple[str, str]:
    """An org's run admitted as attempt 1 (its attempt row open, as the scheduler leaves it), and
    that attempt's run token, as the worker hands it over."""
    started = start(client, create_run(client, tenant)["id"])
    assert started.attempt == 1
    return started.run_id, started.env["TRAINPORT_RUN_TOKEN"]


def _log(executor: LocalExecutor, request: LaunchRequest, rank: int = 0) -> str:
    return executor.log_store.ref(request.run_id, request.attempt, rank).path.read_text()


def _report(log: str) -> dict[str, Any]:
    for line in log.splitlines():
        _, _, rest = line.partition(" stdout NETPROBE ")
        if rest:
            found: dict[str, Any] = json.loads(rest)
            return found
    raise AssertionError(f"the probe printed no report; its log:\n{log}")


def test_a_rank_reaches_the_api_but_not_postgres_redis_or_other_host_ports(
    app: FastAPI, client: TestClient, tenant: Tenant, executor: LocalExecutor, listener: int
) -> None:
    run_id, token = _started_run(app, client, tenant)
    targets = {"postgres": 5432, "redis": 6379, "a host port": listener}
    spec = {"command": [sys.executable, "-c", NET_PROBE, json.dumps(targets)]}
    request = LaunchRequest(run_id, tenant.org_id, 1, spec, {"TRAINPORT_RUN_TOKEN": token})

    executor.launch(request)
    done = wait_until(executor, request, FINISHED, timeout=30)

    log = _log(executor, request)
    assert done.ranks[0].phase is RankPhase.SUCCEEDED, log
    assert _report(log) == {
        "postgres": False,
        "redis": False,
        "a host port": False,
        "healthz": 200,
        "own run": 200,
    }


def test_the_ranks_of_one_attempt_still_meet_on_the_master_port(executor: LocalExecutor) -> None:
    spec = {"command": [sys.executable, "-c", ALL_REDUCE], "compute": {"processes": 2}}
    request = LaunchRequest(f"run_{os.urandom(6).hex()}", "org_b", 1, spec)

    executor.launch(request)
    done = wait_until(executor, request, FINISHED, timeout=120)

    logs = [_log(executor, request, rank) for rank in (0, 1)]
    assert [rank.phase for rank in done.ranks] == [RankPhase.SUCCEEDED] * 2, logs
    assert all("stdout SUM 3" in log for log in logs), logs


def test_the_api_stays_reachable_by_name_after_another_ranks_shim_ended(
    tmp_path: Path, api_url: str
) -> None:
    """`localhost` in the API URL resolves inside (the rank's /etc/hosts), and the forwarding
    listener every shim of the attempt shares outlives rank 0's shim."""
    named = _executor(tmp_path / "state", api_url.replace("127.0.0.1", "localhost"))
    late_call = (
        "import os, sys, time, urllib.request\n"
        "if os.environ['RANK'] == '0': sys.exit(0)\n"
        "time.sleep(1.5)\n"
        "url = os.environ['TRAINPORT_API_URL'] + '/healthz'\n"
        "print('HEALTHZ', urllib.request.urlopen(url, timeout=10).status, url, flush=True)\n"
    )
    spec = {"command": [sys.executable, "-c", late_call], "compute": {"processes": 2}}
    request = LaunchRequest(f"run_{os.urandom(6).hex()}", "org_b", 1, spec)
    try:
        named.launch(request)
        done = wait_until(named, request, FINISHED, timeout=30)
    finally:
        named.cleanup(request.run_id, 1)

    log = _log(named, request, 1)
    assert [rank.phase for rank in done.ranks] == [RankPhase.SUCCEEDED] * 2, log
    assert f"stdout HEALTHZ 200 {api_url.replace('127.0.0.1', 'localhost')}/healthz" in log


def test_the_s3_endpoint_presigned_urls_point_at_is_forwarded_too(
    tmp_path: Path, api_url: str, s3_endpoint: str
) -> None:
    settings = Settings(
        state_dir=tmp_path / "state",
        database_url=embedded_database_url(tmp_path / "state"),
        storage_backend="s3",
        s3_endpoint_url=s3_endpoint,
    )
    state = settings.state_dir
    executor = LocalExecutor(state, LogStore(state / "logs"), api_url, 0.5, rank_sandbox(settings))
    fetch = (
        "import sys, urllib.error, urllib.request\n"
        "try:\n"
        "    status = urllib.request.urlopen(sys.argv[1], timeout=10).status\n"
        "except urllib.error.HTTPError as answered:\n"
        "    status = answered.code\n"
        "print('S3', status, flush=True)\n"
    )
    spec = {"command": [sys.executable, "-c", fetch, f"{s3_endpoint}/some-bucket/some-key"]}
    request = LaunchRequest(f"run_{os.urandom(6).hex()}", "org_b", 1, spec)
    try:
        executor.launch(request)
        done = wait_until(executor, request, FINISHED, timeout=30)
    finally:
        executor.cleanup(request.run_id, 1)

    log = _log(executor, request)
    assert done.ranks[0].phase is RankPhase.SUCCEEDED, log
    assert "stdout S3 404" in log  # moto answered: no such bucket


@pytest.mark.parametrize(
    ("network", "said"),
    [
        ("isolated", "network: one namespace per attempt, only the API (and storage) forwarded"),
        ("host", "network: shared with the host (TRAINPORT_SANDBOX_NETWORK=host)"),
    ],
)
def test_readyz_says_whether_ranks_have_a_network_of_their_own(
    postgres_url: str, network: str, said: str
) -> None:
    settings = Settings(database_url=postgres_url, sandbox_network=network)
    with TestClient(create_app(settings)) as ready:
        assert said in ready.get("/readyz").json()["sandbox"]


def test_cleanup_removes_the_attempts_network_namespace_also_after_a_worker_restart(
    executor: LocalExecutor, tmp_path: Path, api_url: str
) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    first = LaunchRequest(f"run_{os.urandom(6).hex()}", "org_b", 1, {"command": sleeper})
    second = LaunchRequest(f"run_{os.urandom(6).hex()}", "org_b", 1, {"command": sleeper})
    for request in (first, second):
        executor.launch(request)
        wait_until(executor, request, RUNNING, timeout=30)
    names = [NETNS_DIR / namespace_name(r.run_id, r.attempt) for r in (first, second)]
    assert all(path.exists() for path in names)

    executor.cancel(first.run_id, 1)
    executor.cleanup(first.run_id, 1)
    restarted = _executor(tmp_path / "state", api_url)  # a new worker re-adopts the second
    assert restarted.observe()[0].ranks[0].phase is RankPhase.RUNNING
    restarted.cleanup(second.run_id, 1)
    restarted.cleanup(second.run_id, 1)  # idempotent

    assert [path.exists() for path in names] == [False, False]

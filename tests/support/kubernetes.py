"""The Kubernetes executor against the fake API server: its fixtures and what tests ask of it.

The executor is the real one with the official client, pointed at the fake server
(tests/k8s/fake_api.py) on 127.0.0.1, with the simulator (tests/k8s/cluster.py) playing the
Job controller and the kubelets; only the clock for the unschedulable timeout is injected.

The fixtures have the short names the Kubernetes tests read best with (`server`, `cluster`,
`executor`), so they are not a suite-wide plugin: tests/k8s/conftest.py imports them for its
package, and a module elsewhere that drives the fake cluster imports the ones it uses.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k

from core.kubernetes.config import ClusterConfig
from core.launch_request import LaunchRequest
from core.log_archive import LogArchive
from core.logs import LogKey
from tests.factories import log_archive
from tests.k8s.cluster import ClusterSimulator
from tests.k8s.fake_api import FakeApiServer
from workers.executors.base import AttemptObservation, classify_attempt
from workers.executors.kubernetes.client import Apis
from workers.executors.kubernetes.executor import KubernetesExecutor

NAMESPACE = "trainport-runs"


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as running:
        yield running


@pytest.fixture
def cluster(server: FakeApiServer) -> ClusterSimulator:
    return ClusterSimulator(server, NAMESPACE)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_apis(url: str, watch_timeout: int = 5) -> Apis:
    configuration = k.Configuration(host=url)
    return Apis.from_client(
        k.ApiClient(configuration), request_timeout=5, watch_timeout=watch_timeout
    )


@pytest.fixture
def make_executor(
    server: FakeApiServer, tmp_path: Path, clock: Clock, postgres_url: str
) -> Iterator[Callable[..., KubernetesExecutor]]:
    made: list[KubernetesExecutor] = []

    def make(**options: Any) -> KubernetesExecutor:
        executor = KubernetesExecutor(
            make_apis(server.url, options.pop("watch_timeout", 5)),
            ClusterConfig(
                namespace=NAMESPACE,
                default_image="python:3.11-slim",
                installation=options.pop("installation", "test"),
            ),
            log_archive(postgres_url),
            options.pop("state_dir", tmp_path / "state"),
            unschedulable_seconds=60,
            clock=clock,
            cluster_name=options.pop("cluster_name", "test"),
            **options,
        )
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.stop()


@pytest.fixture
def executor(make_executor: Callable[..., KubernetesExecutor]) -> KubernetesExecutor:
    return make_executor()


def launch_request(nodes: int = 2, attempt: int = 1, **spec: Any) -> LaunchRequest:
    run_id = f"run_{os.urandom(8).hex()}"
    body = {"command": ["torchrun", "train.py"], "compute": {"nodes": nodes}, **spec}
    return LaunchRequest(run_id, "org_test", attempt, body, {"TRAINPORT_API_URL": "http://api"})


def seen(executor: KubernetesExecutor, request: LaunchRequest) -> AttemptObservation | None:
    for found in executor.observe():
        if (found.run_id, found.attempt) == (request.run_id, request.attempt):
            return found
    return None


def expect_seen(executor: KubernetesExecutor, request: LaunchRequest) -> AttemptObservation:
    """The attempt as the executor observes it now, which it must."""
    found = seen(executor, request)
    assert found is not None, f"{request.run_id} attempt {request.attempt} is not observed"
    return found


def wait_until(
    executor: KubernetesExecutor, check: Callable[[], bool], timeout: float = 5.0
) -> None:
    """Wait for the executor's watches to deliver what `check` looks for (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not check():
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the executor never saw the expected state"
        executor.pods.wait_for(check, min(remaining, 0.05))


def outcome_after(
    executor: KubernetesExecutor, request: LaunchRequest, phase: str, timeout: float = 5.0
) -> Any:
    def reached() -> bool:
        found = seen(executor, request)
        return found is not None and classify_attempt(found.ranks).phase.value == phase

    wait_until(executor, reached, timeout)
    found = seen(executor, request)
    assert found is not None
    return classify_attempt(found.ranks)


def stored_log(executor: KubernetesExecutor, run_id: str, attempt: int, rank: int) -> str:
    """What the executor stored of a rank's log (the text the API serves)."""
    archive: LogArchive = executor.logs._archive
    key = LogKey(run_id, attempt, rank)
    return archive.page(key, 0)[0].decode()


def log_finished(executor: KubernetesExecutor, run_id: str, attempt: int, rank: int) -> bool:
    archive: LogArchive = executor.logs._archive
    return archive.head(LogKey(run_id, attempt, rank)).finished

"""Fixtures for the real API server: one control plane per session, one worker per test.

The session starts etcd, kube-apiserver 1.20.2 and kube-controller-manager (control_plane.py),
applies the repository's `k8s/namespace.yaml` and `k8s/rbac.yaml` with the admin identity, and
asks the TokenRequest API for a token of the `trainport-worker` ServiceAccount: the worker's
kubeconfig holds that token and nothing else, so every call the executor makes is checked
against the shipped Role. The kubelet stand-in (kubelet.py) plays the nodes with the admin
identity. Each test gets its own database, hence its own installation id, so tests sharing the
server never see each other's objects; `Real.drive` is the worker's loop without Celery: a
scheduler pass, the launches it admitted, a reconcile pass.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes import client as k
from kubernetes import utils as kube_utils

from api.app import create_app
from api.app_state import app_engine, app_sessionmaker
from core.settings import Settings
from tests.factories import Tenant, app_of, create_run, make_tenant
from tests.k8s_real.control_plane import ControlPlane, kube_bin
from tests.k8s_real.kubelet import Kubelet
from tests.workers.conftest import fresh_url, make_database, template_db  # noqa: F401 - fixtures
from workers import scheduler
from workers.clusters import forget_inventory_reads
from workers.executors.base import Executor
from workers.executors.kubernetes import KubernetesExecutor, executor_from_settings
from workers.executors.kubernetes.client import read_json
from workers.executors.registry import UnknownExecutor, Where, log_archive
from workers.reconciler import WorkerContext, launch_attempt, reconcile_once

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "trainport-runs"
CLUSTER = "real"
IMAGE = "python:3.11-slim"
BIN = kube_bin()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(
        reason="no kube-apiserver 1.20.2 binaries: run `bash scripts/kube-binaries.sh` "
        "(or set TRAINPORT_KUBE_BIN to the folder it prints)"
    )
    for item in items:
        if "k8s_real" in item.keywords and BIN is None:
            item.add_marker(skip)


@dataclass
class Plane:
    control: ControlPlane
    kubelet: Kubelet
    worker_kubeconfig: Path
    worker_token: str


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    assert BIN is not None
    control = ControlPlane(BIN, tmp_path_factory.mktemp("kube"))
    try:
        control.start()
        token = install_trainport(control)
        kubelet = Kubelet(control.client(), NAMESPACE, control.pki)
        kubelet.add_node("node-a")
        kubelet.add_node("node-down", reachable=False)
        kubelet.start()
        yield Plane(control, kubelet, control.kubeconfig("worker", token), token)
        kubelet.stop()
    finally:
        control.stop()


def install_trainport(control: ControlPlane) -> str:
    """Apply the shipped namespace and Role as an operator would; the worker's token."""
    admin = control.client()
    for manifest in ("namespace.yaml", "rbac.yaml"):
        kube_utils.create_from_yaml(admin, str(ROOT / "k8s" / manifest))
    wait_for_default_account(control)
    return service_account_token(control, "trainport-worker")


def service_account_token(control: ControlPlane, name: str, namespace: str = "trainport") -> str:
    request = k.AuthenticationV1TokenRequest(spec=k.V1TokenRequestSpec(audiences=[]))
    made = k.CoreV1Api(control.client()).create_namespaced_service_account_token(
        name, namespace, request
    )
    assert made.status is not None  # a created TokenRequest carries its token
    return str(made.status.token)


def wait_for_default_account(control: ControlPlane) -> None:
    """Pod admission needs the namespace's `default` account: the controller makes it."""
    core = k.CoreV1Api(control.client())
    deadline = time.monotonic() + 30
    selector = "metadata.name=default"
    while not core.list_namespaced_service_account(NAMESPACE, field_selector=selector).items:
        control.alive()
        assert time.monotonic() < deadline, "the service-account controller never ran"
        time.sleep(0.1)


@dataclass
class Real:
    """One worker of one installation against the shared real server, and its API."""

    plane: Plane
    api: TestClient
    tenant: Tenant
    settings: Settings
    executor: KubernetesExecutor

    @property
    def kubelet(self) -> Kubelet:
        return self.plane.kubelet

    @property
    def ctx(self) -> WorkerContext:
        return WorkerContext(app_sessionmaker(app_of(self.api)), self.settings, self._executor)

    def _executor(self, where: Where) -> Executor:
        if where.cluster != CLUSTER:
            raise UnknownExecutor(where.cluster)
        return self.executor

    def submit(self, nodes: int = 1, **scheduling: Any) -> str:
        compute = {"nodes": nodes}
        run = create_run(self.api, self.tenant, image=IMAGE, compute=compute, scheduling=scheduling)
        return str(run["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.api.get(
            f"/v1/runs/{run_id}", headers=self.tenant.headers
        ).json()
        return body

    def step(self) -> None:
        """One turn of the worker: a scheduler pass, its launches, a reconcile pass."""
        ctx = self.ctx
        for admitted in scheduler.run_pass(ctx.factory, ctx.settings).admitted:
            launch_attempt(ctx, admitted.run_id, admitted.attempt)
        reconcile_once(ctx)

    def drive(self, run_id: str, statuses: set[str], timeout: float = 20.0) -> dict[str, Any]:
        """Turn the worker until the run reaches one of `statuses`."""
        deadline = time.monotonic() + timeout
        while True:
            self.step()
            run = self.run(run_id)
            if run["status"] in statuses:
                return run
            assert time.monotonic() < deadline, f"never reached {statuses}: {json.dumps(run)}"
            self.executor.pods.wait_for(lambda: False, 0.05)  # let the watches deliver

    def restart_worker(self) -> None:
        """A new worker process: an empty mirror that lists first."""
        self.executor.stop()
        self.executor = new_executor(self.settings)

    def jobs(self) -> list[dict[str, Any]]:
        """The namespace's Jobs as the admin sees them (every installation's)."""
        batch = k.BatchV1Api(self.plane.control.client())
        items: list[dict[str, Any]] = read_json(batch.list_namespaced_job, NAMESPACE)["items"]
        return items


def new_executor(settings: Settings) -> KubernetesExecutor:
    return executor_from_settings(
        settings.for_kubernetes_cluster(CLUSTER), log_archive(settings), CLUSTER
    )


def real_settings(plane: Plane, database_url: str, state: Path, **extra: Any) -> Settings:
    return Settings(
        database_url=database_url,
        state_dir=state,
        local_cluster=False,
        key_touch_interval_seconds=0,
        kubernetes_namespace=NAMESPACE,
        kubernetes_default_image=IMAGE,
        kubernetes_watch_timeout_seconds=extra.pop("watch_timeout", 30),
        kubernetes_request_timeout_seconds=5,
        kubernetes_clusters={CLUSTER: {"kubeconfig": str(plane.worker_kubeconfig)}},
        **extra,
    )


@pytest.fixture
def real(plane: Plane, fresh_url: str, tmp_path: Path) -> Iterator[Real]:  # noqa: F811 - fixture
    settings = real_settings(plane, fresh_url, tmp_path / "state")
    forget_inventory_reads()  # a new database: register the cluster again at the first pass
    app = create_app(settings)
    api = TestClient(app, raise_server_exceptions=False)
    harness = Real(plane, api, make_tenant(api), settings, new_executor(settings))
    yield harness
    harness.executor.stop()
    app_engine(app).dispose()

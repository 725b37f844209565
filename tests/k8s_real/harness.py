"""The harness of the real API server's tests: the control plane, Trainport installed on it
as an operator installs it, and one worker of one installation driven step by step.

tests/k8s_real/conftest.py makes these for each session and test; bench/k8s_real_bench.py uses
them too. `Real.drive` is the worker's loop without Celery: a scheduler pass, the launches it
admitted, a reconcile pass.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from kubernetes import client as k
from kubernetes import utils as kube_utils

from api.app_state import app_sessionmaker
from core.settings import Settings
from tests.factories import Tenant, app_of, create_run
from tests.k8s_real.control_plane import ControlPlane
from tests.k8s_real.kubelet import Kubelet
from workers import scheduler
from workers.executors.base import Executor
from workers.executors.kubernetes import KubernetesExecutor, executor_from_settings
from workers.executors.kubernetes.client import read_json
from workers.executors.registry import UnknownExecutor, Where, log_archive
from workers.reconciler import WorkerContext, launch_attempt, reconcile_once

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "trainport-runs"
CLUSTER = "real"
IMAGE = "python:3.11-slim"


@dataclass
class Plane:
    control: ControlPlane
    kubelet: Kubelet
    worker_kubeconfig: Path
    worker_token: str


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

"""Fixtures for the real API server: one control plane per session, one worker per test.

The session starts etcd, kube-apiserver 1.20.2 and kube-controller-manager (control_plane.py),
applies the repository's `k8s/namespace.yaml` and `k8s/rbac.yaml` with the admin identity, and
asks the TokenRequest API for a token of the `trainport-worker` ServiceAccount: the worker's
kubeconfig holds that token and nothing else, so every call the executor makes is checked
against the shipped Role. The kubelet stand-in (kubelet.py) plays the nodes with the admin
identity. Each test gets its own database (`fresh_url`, tests/support/databases.py), hence its
own installation id, so tests sharing the server never see each other's objects; `Real.drive`
(harness.py) is the worker's loop without Celery: a scheduler pass, the launches it admitted, a
reconcile pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.app_state import app_engine
from tests.factories import make_tenant
from tests.k8s_real.control_plane import ControlPlane, kube_bin
from tests.k8s_real.harness import (
    NAMESPACE,
    Plane,
    Real,
    install_trainport,
    new_executor,
    real_settings,
)
from tests.k8s_real.kubelet import Kubelet
from workers.clusters import forget_inventory_reads

BIN = kube_bin()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(
        reason="no kube-apiserver 1.20.2 binaries: run `bash scripts/kube-binaries.sh` "
        "(or set TRAINPORT_KUBE_BIN to the folder it prints)"
    )
    for item in items:
        if "k8s_real" in item.keywords and BIN is None:
            item.add_marker(skip)


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


@pytest.fixture
def real(plane: Plane, fresh_url: str, tmp_path: Path) -> Iterator[Real]:
    settings = real_settings(plane, fresh_url, tmp_path / "state")
    forget_inventory_reads()  # a new database: register the cluster again at the first pass
    app = create_app(settings)
    api = TestClient(app, raise_server_exceptions=False)
    harness = Real(plane, api, make_tenant(api), settings, new_executor(settings))
    yield harness
    harness.executor.stop()
    app_engine(app).dispose()

"""Two Kubernetes clusters behind fake API servers, reached through kubeconfig files as the
worker reaches real ones, with the real scheduler, launcher and reconciler driving runs on them.

`east` has A100 nodes and `west` H100 nodes, each with a simulator playing its Job controller
and kubelets; the API and the worker share one Settings (as in the embedded mode). A pod's
runtime is played through the API with its environment's run token (`job_env`,
`save_checkpoint`, `heartbeat`). The fixtures keep the short names their tests read best with
(`clusters`, `api`), so, like tests/support/kubernetes.py's, they are not a suite-wide plugin:
each module that drives these clusters imports the ones it uses (tests/core/conftest.py has an
`api` of its own).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from api.app_state import app_engine
from core.settings import Settings
from tests.factories import Tenant, create_run
from tests.k8s.cluster import ClusterSimulator
from tests.k8s.fake_api import FakeApiServer
from tests.support.checkpointing import commit_files
from tests.support.scheduling import sessions
from workers import scheduler
from workers.clusters import forget_inventory_reads
from workers.executors.registry import Where, executor_for
from workers.reconciler import WorkerContext, launch_attempt, reconcile_once

A100, H100 = "NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3"
NAMESPACE = "trainport-runs"
SIMULATORS: dict[str, ClusterSimulator] = {}  # the current test's clusters, by name


@dataclass
class Clusters:
    east: ClusterSimulator
    west: ClusterSimulator
    settings: Settings


def _kubeconfig(folder: Path, name: str, url: str) -> Path:
    path = folder / f"{name}.kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": url}}],
        "users": [{"name": name, "user": {"token": "test"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def clusters(fresh_url: str, tmp_path: Path) -> Iterator[Clusters]:
    with FakeApiServer() as east_api, FakeApiServer() as west_api:
        east, west = ClusterSimulator(east_api, NAMESPACE), ClusterSimulator(west_api, NAMESPACE)
        for index in range(2):
            east.add_node(f"a{index}", gpus=4, gpu_type=A100)
            west.add_node(f"h{index}", gpus=4, gpu_type=H100)
        west.add_node("h-cordoned", gpus=8, gpu_type=H100, cordoned=True)
        east.add_node("a-not-ready", gpus=8, gpu_type=A100, ready=False)
        settings = Settings(
            database_url=fresh_url,
            state_dir=tmp_path / "state",
            local_cluster=False,
            key_touch_interval_seconds=0,
            kubernetes_watch_timeout_seconds=5,
            kubernetes_request_timeout_seconds=5,
            kubernetes_clusters={
                "east": {"kubeconfig": str(_kubeconfig(tmp_path, "east", east_api.url))},
                "west": {"kubeconfig": str(_kubeconfig(tmp_path, "west", west_api.url))},
            },
        )
        forget_inventory_reads()
        SIMULATORS.update(east=east, west=west)
        yield Clusters(east, west, settings)
        for name in ("east", "west"):
            executor = executor_for_cluster(name, settings)
            executor.stop()


@pytest.fixture
def api(clusters: Clusters) -> Iterator[TestClient]:
    """The API with the worker's settings (no lifespan: nothing here long-polls)."""
    app = create_app(clusters.settings)
    yield TestClient(app, raise_server_exceptions=False)
    app_engine(app).dispose()


def executor_for_cluster(name: str, settings: Settings) -> Any:
    return executor_for(Where(name, "kubernetes"), settings)


def context(client: TestClient, settings: Settings) -> WorkerContext:
    return WorkerContext(sessions(client), settings, lambda where: executor_for(where, settings))


def h100_run(
    client: TestClient, tenant: Tenant, image: str | None = "python:3.11-slim", **scheduling: Any
) -> str:
    compute = {"nodes": 2, "gpus_per_node": 4, "gpu_type": H100}
    run: dict[str, Any] = create_run(
        client, tenant, image=image, compute=compute, scheduling=scheduling
    )
    return str(run["id"])


def admit_and_launch(client: TestClient, ctx: WorkerContext, run_id: str) -> int:
    """A scheduler pass that admits the run, then its launch task; the attempt launched."""
    admitted = scheduler.run_pass(ctx.factory, ctx.settings, [run_id]).admitted
    assert [a.run_id for a in admitted] == [run_id]
    attempt = admitted[0].attempt
    assert launch_attempt(ctx, run_id, attempt) == "launched"
    return attempt


def reconcile_until(
    client: TestClient, tenant: Tenant, ctx: WorkerContext, cluster: str, run_id: str,
    statuses: set[str], rounds: int = 60,
) -> dict[str, Any]:  # fmt: skip
    """Alternate the cluster's controllers and the reconciler until the run reaches `statuses`."""
    sim, executor = SIMULATORS[cluster], executor_for_cluster(cluster, ctx.settings)
    for _ in range(rounds):
        sim.step()
        executor.pods.wait_for(lambda: False, 0.05)  # let the watches deliver the step
        reconcile_once(ctx)
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()
        if run["status"] in statuses:
            return run
    raise AssertionError(f"run {run_id} never reached {statuses}: {run}")


def job_env(job: dict[str, Any]) -> dict[str, str]:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


# -- a pod's runtime, as the SDK plays it: through the API, with the pod's own environment ------


def _pod_headers(env: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['TRAINPORT_RUN_TOKEN']}"}


def save_checkpoint(api: TestClient, env: dict[str, str], step: int) -> None:
    body = commit_files(env["TRAINPORT_CHECKPOINT_URI"], step, {"model.bin": b"weights"})
    url = f"/v1/runs/{env['TRAINPORT_RUN_ID']}/checkpoints"
    response = api.post(url, json=body, headers=_pod_headers(env))
    assert response.status_code == 201, response.text


def latest_checkpoint(api: TestClient, env: dict[str, str]) -> int:
    url = f"/v1/runs/{env['TRAINPORT_RUN_ID']}/checkpoints"
    listed = api.get(url, headers=_pod_headers(env)).json()  # newest first
    return int(listed[0]["step"])


def heartbeat(api: TestClient, env: dict[str, str], **beat: int) -> None:
    url = f"/v1/runs/{env['TRAINPORT_RUN_ID']}/heartbeat"
    response = api.post(url, json=beat, headers=_pod_headers(env))
    assert response.status_code == 204, response.text

"""Runs on Kubernetes clusters, driven by the real scheduler, launcher and reconciler.

Two fake API servers over HTTP stand for two clusters (`east` with A100 nodes, `west` with
H100 nodes), each with a simulator playing its Job controller and kubelets. The worker reaches
them through kubeconfig files, as it would a real cluster; the scheduler registers both with
the inventory read from their nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from core.db import session_scope
from core.models import Cluster
from core.settings import Settings
from tests.factories import Tenant, create_run, make_tenant
from tests.k8s.cluster import ClusterSimulator
from tests.k8s.fake_api import FakeApiServer
from tests.workers.test_admission import sessions
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
        settings = Settings(
            database_url=fresh_url,
            state_dir=tmp_path / "state",
            local_cluster=False,
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
            executor.stop()  # type: ignore[attr-defined]


def executor_for_cluster(name: str, settings: Settings) -> Any:
    return executor_for(Where(name, "kubernetes"), settings)


def context(client: TestClient, settings: Settings) -> WorkerContext:
    return WorkerContext(sessions(client), settings, lambda where: executor_for(where, settings))


def h100_run(client: TestClient, tenant: Tenant, **scheduling: Any) -> str:
    compute = {"nodes": 2, "gpus_per_node": 4, "gpu_type": H100}
    run: dict[str, Any] = create_run(client, tenant, compute=compute, scheduling=scheduling)
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


def test_the_scheduler_registers_each_cluster_with_the_gpus_of_its_usable_nodes(
    fresh_client: TestClient, clusters: Clusters
) -> None:
    scheduler.run_pass(sessions(fresh_client), clusters.settings)
    with session_scope(sessions(fresh_client)) as session:
        rows = {c.name: (c.executor, c.inventory) for c in session.query(Cluster).all()}
    assert rows == {
        "east": ("kubernetes", {"gpus": {A100: 8}, "cpu_slots": None, "nodes": 2}),
        "west": ("kubernetes", {"gpus": {H100: 8}, "cpu_slots": None, "nodes": 2}),
    }


def test_a_run_lands_on_the_cluster_with_its_gpu_type_and_succeeds_there(
    fresh_client: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(fresh_client), context(fresh_client, clusters.settings)
    run_id = h100_run(fresh_client, tenant)
    admit_and_launch(fresh_client, ctx, run_id)
    assert (len(clusters.west.jobs()), len(clusters.east.jobs())) == (1, 0)
    run = reconcile_until(fresh_client, tenant, ctx, "west", run_id, {"succeeded"})
    assert [(a["attempt"], a["outcome"]) for a in run["attempts"]] == [(1, "succeeded")]


def test_an_evicted_pod_retries_the_run_as_a_new_job_that_resumes_from_the_same_checkpoints(
    fresh_client: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(fresh_client), context(fresh_client, clusters.settings)
    west = clusters.west
    run_id = h100_run(fresh_client, tenant, max_retries=0)
    admit_and_launch(fresh_client, ctx, run_id)
    west.fates = {0: "run", 1: "evict"}
    run = reconcile_until(fresh_client, tenant, ctx, "west", run_id, {"queued"})
    assert run["status_reason"] == "retrying"
    assert run["attempts"][0]["outcome"] == "system_failed"  # not the user's max_retries: 0
    west.fates = {}
    assert admit_and_launch(fresh_client, ctx, run_id) == 2
    envs = [_env(job) for job in west.jobs()]
    assert sorted(env["TRAINPORT_ATTEMPT"] for env in envs) == ["1", "2"]
    assert len({env["TRAINPORT_CHECKPOINT_URI"] for env in envs}) == 1  # the same checkpoints
    run = reconcile_until(fresh_client, tenant, ctx, "west", run_id, {"succeeded"})
    assert [a["outcome"] for a in run["attempts"]] == ["system_failed", "succeeded"]


def test_an_image_that_cannot_be_pulled_fails_the_run_without_a_retry(
    fresh_client: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(fresh_client), context(fresh_client, clusters.settings)
    clusters.west.fates = {0: "image_pull", 1: "image_pull"}
    run_id = h100_run(fresh_client, tenant, max_retries=2)
    admit_and_launch(fresh_client, ctx, run_id)
    run = reconcile_until(fresh_client, tenant, ctx, "west", run_id, {"failed", "queued"})
    assert (run["status"], run["status_reason"]) == ("failed", "image_pull_failed")
    assert "ImagePullBackOff" in run["status_message"]
    assert len(run["attempts"]) == 1


def _env(job: dict[str, Any]) -> dict[str, str]:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}

"""Runs on Kubernetes clusters, driven by the real scheduler, launcher and reconciler.

Two fake API servers over HTTP stand for two clusters (`east` with A100 nodes, `west` with
H100 nodes), each with a simulator playing its Job controller and kubelets. The worker reaches
them through kubeconfig files, as it would a real cluster; the scheduler registers both with
the inventory read from their nodes. The API and the worker share one Settings (as in the
embedded mode), so what a pod's TRAINPORT_* environment names is what the API serves; the test
plays a pod's runtime by calling the API with that environment's run token. The clusters, their
fixtures and those helpers are tests/support/kubernetes_clusters.py's, shared with the tests of
time limits, preemption and the secrets of a Kubernetes launch.
"""

# ruff: noqa: F811 - the Kubernetes fixtures are imported by name; each test takes them as arguments

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.db import session_scope
from core.kubernetes import naming
from core.logs import LogKey
from core.models import Cluster
from core.settings import Settings
from tests.factories import create_run, log_archive, make_tenant, read_log
from tests.support.kubernetes_clusters import (  # noqa: F401 - fixtures, used as arguments
    A100,
    H100,
    Clusters,
    admit_and_launch,
    api,
    clusters,
    context,
    h100_run,
    heartbeat,
    job_env,
    latest_checkpoint,
    reconcile_until,
    save_checkpoint,
)
from tests.support.scheduling import sessions
from workers import scheduler
from workers.clusters import sync_kubernetes_clusters
from workers.reconciler import launch_attempt, reconcile_once


def test_the_scheduler_registers_each_cluster_with_the_gpus_of_its_usable_nodes(
    api: TestClient, clusters: Clusters
) -> None:
    scheduler.run_pass(sessions(api), clusters.settings)
    with session_scope(sessions(api)) as session:
        rows = {c.name: (c.executor, c.inventory) for c in session.query(Cluster).all()}
    east_nodes = {"a0": {A100: 4}, "a1": {A100: 4}}
    west_nodes = {"h0": {H100: 4}, "h1": {H100: 4}}
    assert rows == {
        "east": (
            "kubernetes",
            {"gpus": {A100: 8}, "cpu_slots": None, "nodes": 2, "node_gpus": east_nodes},
        ),
        "west": (
            "kubernetes",
            {"gpus": {H100: 8}, "cpu_slots": None, "nodes": 2, "node_gpus": west_nodes},
        ),
    }


def test_each_cluster_s_server_version_is_recorded_and_an_unsupported_one_shown(
    api: TestClient, clusters: Clusters, caplog: pytest.LogCaptureFixture
) -> None:
    """In the inventory (`python -m api.admin clusters`) and in /readyz, which stays ready: a
    1.20 cluster still runs single-node runs."""
    clusters.west.server.pretend_version("v1.20.2")
    with caplog.at_level(logging.WARNING, logger="trainport.clusters"):
        scheduler.run_pass(sessions(api), clusters.settings)
    with session_scope(sessions(api)) as session:
        versions = {c.name: c.server_version for c in session.query(Cluster).all()}
    assert versions == {"east": "v1.31.2", "west": "v1.20.2"}
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("Kubernetes cluster west is not supported: Kubernetes v1.20.2")
    ready = api.get("/readyz")
    assert ready.status_code == 200
    problem = ready.json()["unsupported_clusters"]["west"]
    assert "older than 1.31" in problem
    assert "no Indexed Jobs" in problem
    assert list(ready.json()["unsupported_clusters"]) == ["west"]
    listing = admin_clusters(clusters.settings)
    east, west = listing.splitlines()
    assert east.startswith('east  kubernetes  v1.31.2  {"cpu_slots": null, "gpus": {')
    assert "UNSUPPORTED" not in east
    assert west.startswith("west  kubernetes  v1.20.2  {")
    assert "  UNSUPPORTED: Kubernetes v1.20.2 is older than 1.31" in west


def test_each_cluster_s_nodes_are_listed_at_most_once_per_inventory_interval(
    api: TestClient, clusters: Clusters
) -> None:
    factory, now = sessions(api), [0.0]
    interval = clusters.settings.kubernetes_inventory_seconds
    for _ in range(3):
        sync_kubernetes_clusters(factory, clusters.settings, clock=lambda: now[0])
    clusters.east.add_node("a-new", gpus=4, gpu_type=A100)
    now[0] = interval - 1
    sync_kubernetes_clusters(factory, clusters.settings, clock=lambda: now[0])
    assert clusters.east.server.store.requests["GET nodes"] == 1
    assert _inventory(api, "east")["gpus"] == {A100: 8}
    now[0] = interval
    sync_kubernetes_clusters(factory, clusters.settings, clock=lambda: now[0])
    assert clusters.east.server.store.requests["GET nodes"] == 2
    assert _inventory(api, "east")["gpus"] == {A100: 12}


def _inventory(api: TestClient, name: str) -> dict[str, Any]:
    with session_scope(sessions(api)) as session:
        cluster = session.get(Cluster, name)
        assert cluster is not None
        return dict(cluster.inventory)


def test_a_run_lands_on_the_cluster_with_its_gpu_type_and_succeeds_there(
    api: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    run_id = h100_run(api, tenant)
    admit_and_launch(api, ctx, run_id)
    assert (len(clusters.west.jobs()), len(clusters.east.jobs())) == (1, 0)
    run = reconcile_until(api, tenant, ctx, "west", run_id, {"succeeded"})
    assert [(a["attempt"], a["outcome"]) for a in run["attempts"]] == [(1, "succeeded")]


def test_an_evicted_pod_retries_the_run_as_a_new_job_that_resumes_from_its_checkpoint(
    api: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    west = clusters.west
    west.fates = {0: "run", 1: "run"}
    run_id = h100_run(api, tenant, max_retries=0)
    admit_and_launch(api, ctx, run_id)
    reconcile_until(api, tenant, ctx, "west", run_id, {"running"})
    [first] = [job_env(job) for job in west.jobs()]
    save_checkpoint(api, first, step=50)
    heartbeat(api, first, step=60)
    west.fates = {0: "run", 1: "evict"}
    run = reconcile_until(api, tenant, ctx, "west", run_id, {"queued"})
    assert run["status_reason"] == "retrying"
    ended = [(a["outcome"], a["reason"]) for a in run["attempts"]]
    assert ended == [("system_failed", "evicted")]  # not the user's max_retries: 0
    archive = log_archive(clusters.settings.database_url)  # rank 0 was running, now stopped
    assert archive.head(LogKey(run_id, 1, 0)).finished
    assert "rank 0 working" in read_log(archive, run_id, 1, 0)
    west.fates = {}
    assert admit_and_launch(api, ctx, run_id) == 2
    [second] = [job_env(job) for job in west.jobs() if job_env(job)["TRAINPORT_ATTEMPT"] == "2"]
    assert second["TRAINPORT_CHECKPOINT_URI"] == first["TRAINPORT_CHECKPOINT_URI"]
    heartbeat(api, second, step=50, resumed_from_step=latest_checkpoint(api, second))
    run = reconcile_until(api, tenant, ctx, "west", run_id, {"succeeded"})
    resumed = [(a["outcome"], a["resumed_from_step"], a["steps_lost"]) for a in run["attempts"]]
    assert resumed == [("system_failed", None, None), ("succeeded", 50, 10)]


def test_an_image_that_cannot_be_pulled_fails_the_run_without_a_retry(
    api: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    clusters.west.fates = {0: "image_pull", 1: "image_pull"}
    run_id = h100_run(api, tenant, max_retries=2)
    admit_and_launch(api, ctx, run_id)
    run = reconcile_until(api, tenant, ctx, "west", run_id, {"failed", "queued"})
    assert (run["status"], run["status_reason"]) == ("failed", "image_pull_failed")
    assert "ImagePullBackOff" in run["status_message"]
    assert len(run["attempts"]) == 1


def test_a_spec_the_cluster_cannot_run_fails_the_run_without_a_retry(
    api: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    run_id = h100_run(api, tenant, max_retries=2, image=None)  # and no default image configured
    admit_and_launch(api, ctx, run_id)
    assert clusters.west.jobs() == []
    run = reconcile_until(api, tenant, ctx, "west", run_id, {"failed", "queued"})
    assert (run["status"], run["status_reason"]) == ("failed", "spec_refused")
    assert "no image" in run["status_message"]
    assert len(run["attempts"]) == 1


def test_a_pods_log_500_on_one_run_stalls_no_reconcile_pass(
    api: TestClient, clusters: Clusters
) -> None:
    """An unreachable kubelet (pods/log 500) for one run: every pass still settles the rest."""
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    compute = {"nodes": 1, "gpus_per_node": 4, "gpu_type": H100}
    image = "python:3.11-slim"
    broken, healthy = (
        str(create_run(api, tenant, image=image, compute=compute)["id"]) for _ in range(2)
    )
    clusters.west.server.fail_logs(naming.attempt_name(broken, 1))
    admitted = scheduler.run_pass(ctx.factory, ctx.settings, [broken, healthy]).admitted
    for run in admitted:
        assert launch_attempt(ctx, run.run_id, run.attempt) == "launched"
    reconcile_until(api, tenant, ctx, "west", broken, {"succeeded"})  # no pass raises
    reconcile_until(api, tenant, ctx, "west", healthy, {"succeeded"})
    assert not clusters.west.jobs()  # both cleaned up


def test_one_runs_failing_step_is_logged_with_its_id_and_stalls_no_other_run(
    api: TestClient, clusters: Clusters, caplog: pytest.LogCaptureFixture
) -> None:
    """The server refuses to delete one run's Job (500): the cleanup after settling it raises,
    and so does stopping it as an orphan afterwards; every pass still settles the other run."""
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    compute = {"nodes": 1, "gpus_per_node": 4, "gpu_type": H100}
    image = "python:3.11-slim"
    broken, healthy = (
        str(create_run(api, tenant, image=image, compute=compute)["id"]) for _ in range(2)
    )
    clusters.west.server.fail_deletes(naming.attempt_name(broken, 1))
    admitted = scheduler.run_pass(ctx.factory, ctx.settings, [broken, healthy]).admitted
    for run in admitted:
        assert launch_attempt(ctx, run.run_id, run.attempt) == "launched"
    with caplog.at_level(logging.ERROR, logger="trainport.reconciler"):
        reconcile_until(api, tenant, ctx, "west", broken, {"succeeded"})  # no pass raises
        reconcile_until(api, tenant, ctx, "west", healthy, {"succeeded"})
        reconcile_once(ctx)
    failures = [r for r in caplog.records if broken in r.getMessage()]
    assert failures
    assert all(r.exc_info for r in failures)  # with its traceback, once per step
    assert not [r for r in caplog.records if healthy in r.getMessage()]
    assert [j["metadata"]["name"] for j in clusters.west.jobs()] == [naming.attempt_name(broken, 1)]
    clusters.west.server.heal_deletes()
    reconcile_once(ctx)  # an orphan now: stopped and deleted
    assert not clusters.west.jobs()


def admin_clusters(settings: Settings) -> str:
    """`python -m api.admin clusters` on these settings' database, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env["TRAINPORT_DATABASE_URL"] = settings.database_url
    done = subprocess.run(
        [sys.executable, "-m", "api.admin", "clusters"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout

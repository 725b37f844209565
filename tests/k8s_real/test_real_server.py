"""The executor, the scheduler and the reconciler against a real kube-apiserver 1.20.2.

The worker acts only with the `trainport-worker` ServiceAccount's token, bound by the shipped
`k8s/rbac.yaml`; the Job controller and the garbage collector are the real ones; the kubelet
stand-in plays the nodes. Runs are single-node: 1.20 has no Indexed Jobs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import yaml
from kubernetes import client as k
from kubernetes.client.exceptions import ApiException

from api.app_state import app_sessionmaker
from core.db import session_scope
from core.kubernetes import naming
from core.kubernetes.config import ClusterConfig
from core.kubernetes.manifests import build_attempt, build_org_secret
from core.models import Cluster
from core.runs.states import StatusReason
from core.secrets.schemas import LaunchSecrets
from tests.factories import app_of, create_run
from tests.k8s_real.harness import (
    CLUSTER,
    IMAGE,
    NAMESPACE,
    ROOT,
    Plane,
    Real,
    service_account_token,
)
from tests.support.kubernetes import expect_seen, launch_request, stored_log
from workers import scheduler
from workers.executors.base import AttemptPhase, classify_attempt
from workers.executors.kubernetes.client import Apis, read_json
from workers.executors.kubernetes.executor import KubernetesExecutor
from workers.executors.registry import log_archive
from workers.reconciler import launch_attempt

pytestmark = pytest.mark.k8s_real


def eventually(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll the real server until `check()` is truthy (its controllers act asynchronously)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)
    return result


def attempts(run: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [(a["attempt"], a["outcome"], a["reason"]) for a in run["attempts"]]


def of_run(real: Real, run_id: str) -> list[dict[str, Any]]:
    """The run's Jobs as the admin sees them."""
    value = naming.label_value(run_id)
    return [j for j in real.jobs() if j["metadata"]["labels"].get(naming.RUN_ID_KEY) == value]


def pods_of_run(real: Real, run_id: str) -> list[dict[str, Any]]:
    core = k.CoreV1Api(real.plane.control.client())
    selector = f"{naming.RUN_ID_KEY}={naming.label_value(run_id)}"
    document = read_json(core.list_namespaced_pod, NAMESPACE, label_selector=selector)
    items: list[dict[str, Any]] = document["items"]
    return items


# -- the lifecycle ------------------------------------------------------------------------------


def test_a_run_goes_job_pod_running_succeeded_and_its_log_is_copied(real: Real) -> None:
    run_id = real.submit()
    real.kubelet.fate(run_id, exit_code=None, lines=("step 1 done",))
    real.drive(run_id, {"running"})
    [pod] = pods_of_run(real, run_id)
    assert pod["spec"]["nodeName"] == "node-a"  # bound, and the Job controller made it
    real.kubelet.end(run_id, 0)
    run = real.drive(run_id, {"succeeded"})
    assert attempts(run) == [(1, "succeeded", "completed")]
    logs = real.api.get(f"/v1/runs/{run_id}/logs", headers=real.tenant.headers)
    assert "step 1 done" in logs.text  # copied through the apiserver's pods/log proxy
    eventually(lambda: not of_run(real, run_id) and not pods_of_run(real, run_id), what="cleanup")


def test_exit_1_fails_the_attempt_and_the_retry_succeeds(real: Real) -> None:
    run_id = real.submit(max_retries=1)
    real.kubelet.fate(run_id, 1, exit_code=1)
    real.kubelet.fate(run_id, 2, exit_code=0)
    run = real.drive(run_id, {"succeeded", "failed"})
    assert attempts(run) == [(1, "failed", "exit_code_nonzero"), (2, "succeeded", "completed")]
    assert run["attempts"][0]["exit_code"] == 1


def test_oom_fails_the_run_naming_the_rank(real: Real) -> None:
    run_id = real.submit(max_retries=0)
    real.kubelet.fate(run_id, exit_code=137, reason="OOMKilled")
    run = real.drive(run_id, {"failed"})
    assert run["status_reason"] == "oom_killed"
    assert "rank 0" in run["status_message"]
    assert "OOMKilled" in run["status_message"]


def test_cancel_deletes_the_job_and_the_garbage_collector_removes_its_pods(real: Real) -> None:
    run_id = real.submit()
    real.kubelet.fate(run_id, exit_code=None)
    real.drive(run_id, {"running"})
    [pod] = pods_of_run(real, run_id)
    response = real.api.post(f"/v1/runs/{run_id}/cancel", headers=real.tenant.headers)
    assert response.status_code == 200, response.text
    run = real.drive(run_id, {"cancelled"})
    assert attempts(run) == [(1, "cancelled", "user_cancelled")]
    assert pod["metadata"]["name"] in real.kubelet.sigtermed  # the GC deleted it, gracefully
    assert not of_run(real, run_id)
    assert not pods_of_run(real, run_id)
    assert not _services_of_run(real, run_id)  # owned by the Job: collected with it


def _services_of_run(real: Real, run_id: str) -> list[Any]:
    core = k.CoreV1Api(real.plane.control.client())
    selector = f"{naming.RUN_ID_KEY}={naming.label_value(run_id)}"
    return list(core.list_namespaced_service(NAMESPACE, label_selector=selector).items)


def test_a_job_deleted_outside_trainport_is_the_platform_s_failure_and_retried(
    real: Real,
) -> None:
    run_id = real.submit(max_retries=0)  # a user's failure would end the run
    real.kubelet.fate(run_id, 1, exit_code=None)
    real.kubelet.fate(run_id, 2, exit_code=0)
    real.drive(run_id, {"running"})
    batch = k.BatchV1Api(real.plane.control.client())
    name = naming.attempt_name(run_id, 1)
    batch.delete_namespaced_job(name, NAMESPACE, propagation_policy="Background")  # as kubectl
    run = real.drive(run_id, {"succeeded", "failed"})
    assert attempts(run)[0] == (1, "system_failed", "deleted_externally")
    assert name in run["attempts"][0]["message"]
    assert attempts(run)[1] == (2, "succeeded", "completed")


def test_a_foreign_installation_s_job_is_left_alone(real: Real) -> None:
    """Another Trainport, same ServiceAccount and namespace, its own installation label."""
    foreign = launch_request(nodes=1, image=IMAGE)
    config = ClusterConfig(namespace=NAMESPACE, default_image=IMAGE, installation="someone-else")
    built = build_attempt(foreign, config)
    real.kubelet.fate(foreign.run_id, exit_code=None)
    worker = k.BatchV1Api(real.plane.control.client(real.plane.worker_token))
    read_json(worker.create_namespaced_job, NAMESPACE, built.job)
    try:
        eventually(lambda: _running(pods_of_run(real, foreign.run_id)), what="foreign pod runs")
        run_id = real.submit()
        run = real.drive(run_id, {"succeeded"})
        assert attempts(run) == [(1, "succeeded", "completed")]
        [job] = of_run(real, foreign.run_id)
        assert not job["metadata"].get("deletionTimestamp")
        assert _running(pods_of_run(real, foreign.run_id))
        assert foreign.run_id not in {o.run_id for o in real.executor.observe()}
    finally:
        batch = k.BatchV1Api(real.plane.control.client())
        batch.delete_namespaced_job(built.name, NAMESPACE, propagation_policy="Background")


def _running(pods: list[dict[str, Any]]) -> bool:
    return bool(pods) and all(p["status"].get("phase") == "Running" for p in pods)


# -- the server and the worker going away -------------------------------------------------------


def test_an_apiserver_restart_mid_run_lists_again_and_the_run_settles(real: Real) -> None:
    run_id = real.submit()
    real.kubelet.fate(run_id, exit_code=None)
    real.drive(run_id, {"running"})
    lists_before = (real.executor.jobs.listed_at, real.executor.pods.listed_at)
    real.plane.control.restart_apiserver()
    real.kubelet.end(run_id, 0)
    run = real.drive(run_id, {"succeeded"}, timeout=40)
    assert attempts(run) == [(1, "succeeded", "completed")]
    assert (real.executor.jobs.listed_at, real.executor.pods.listed_at) != lists_before  # 410


def test_a_restarted_worker_settles_a_job_that_finished_while_it_was_away(real: Real) -> None:
    """The worker dies after the launch; the Job completes; the new worker's list settles it
    at once (its watches stay quiet: no unrelated event comes to wake it)."""
    run_id = real.submit()
    real.kubelet.fate(run_id, exit_code=None)
    ctx = real.ctx
    [admitted] = scheduler.run_pass(ctx.factory, ctx.settings).admitted
    assert launch_attempt(ctx, run_id, admitted.attempt) == "launched"
    eventually(lambda: _running(pods_of_run(real, run_id)), what="the pod runs")
    real.executor.stop()  # the worker is gone
    real.kubelet.end(run_id, 0)
    eventually(lambda: _complete(of_run(real, run_id)), what="the Job completes")
    real.restart_worker()
    run = real.drive(run_id, {"succeeded"}, timeout=10)  # well inside the 30 s watch timeout
    assert attempts(run) == [(1, "succeeded", "completed")]


def _complete(jobs: list[dict[str, Any]]) -> bool:
    conditions = [c for j in jobs for c in (j.get("status") or {}).get("conditions") or []]
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


# -- one run's trouble ---------------------------------------------------------------------------


def test_a_pods_log_500_stalls_neither_the_pass_nor_the_other_runs(real: Real) -> None:
    """A pod on a node whose kubelet is unreachable: the apiserver answers pods/log with 500."""
    broken, healthy = real.submit(), real.submit()
    real.kubelet.fate(broken, exit_code=None, node="node-down", lines=("lost line",))
    real.kubelet.fate(healthy, exit_code=None, lines=("healthy line",))
    real.drive(broken, {"running"})
    real.drive(healthy, {"running"})
    [pod] = pods_of_run(real, broken)
    worker = k.CoreV1Api(real.plane.control.client(real.plane.worker_token))
    with pytest.raises(ApiException) as refused:
        worker.read_namespaced_pod_log(pod["metadata"]["name"], NAMESPACE, container="trainer")
    assert refused.value.status == 500
    real.kubelet.end(broken, 0)
    real.kubelet.end(healthy, 0)
    real.drive(broken, {"succeeded"})  # every pass returns; cleanup notes the lost tail
    real.drive(healthy, {"succeeded"})
    assert "healthy line" in stored_log(real.executor, healthy, 1, 0)
    assert "could not be copied" in stored_log(real.executor, broken, 1, 0)
    eventually(lambda: not of_run(real, broken), what="the broken run's Job is deleted")


def test_an_unreadable_pod_log_is_one_quiet_warning(
    real: Real, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trainport")
    run_id = real.submit()
    real.kubelet.fate(run_id, exit_code=None, node="node-down")
    real.drive(run_id, {"running"})
    for _ in range(10):  # each pass restarts the follower, which meets the 500 again
        real.step()
        time.sleep(0.1)
    real.kubelet.end(run_id, 0)
    real.drive(run_id, {"succeeded"})
    # Quiet while it may be transient (a debug line); a warning only once it persists (60 s).
    follow = [r for r in caplog.records if "follow" in r.message or "log" in r.message]
    assert [r for r in follow if r.levelno == logging.DEBUG], [r.message for r in follow]
    assert len([r for r in follow if r.levelno >= logging.WARNING]) <= 1
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("trainport")]


# -- the Role ----------------------------------------------------------------------------------


def test_the_headless_service_is_owned_by_its_job_under_owner_reference_enforcement(
    real: Real, plane: Plane
) -> None:
    """`OwnerReferencesPermissionEnforcement` is on: the shipped Role's `jobs/finalizers`
    update lets the worker set `blockOwnerDeletion`; a Role without it is refused, and the
    launch fails saying so."""
    run_id = real.submit()
    real.kubelet.fate(run_id, exit_code=None)
    real.drive(run_id, {"running"})
    core = k.CoreV1Api(plane.control.client())
    metadata = core.read_namespaced_service(naming.attempt_name(run_id, 1), NAMESPACE).metadata
    assert metadata is not None
    assert metadata.owner_references is not None
    [owner] = metadata.owner_references
    assert (owner.kind, owner.block_owner_deletion) == ("Job", True)

    executor = _executor_without_finalizers(plane, real)
    request = launch_request(nodes=1, image=IMAGE)
    try:
        executor.launch(request)
        outcome = classify_attempt(expect_seen(executor, request).ranks)
        assert outcome.phase is AttemptPhase.FAILED
        assert outcome.reason is StatusReason.SYSTEM_ERROR
        assert "headless Service" in outcome.message
        assert "jobs/finalizers" in outcome.message
    finally:
        executor.cleanup(request.run_id, 1)
        executor.stop()


def _executor_without_finalizers(plane: Plane, real: Real) -> KubernetesExecutor:
    """The worker as it was before the fix: the Role less `jobs/finalizers`."""
    name = "trainport-worker-no-finalizers"
    role = next(
        d
        for d in yaml.safe_load_all((ROOT / "k8s" / "rbac.yaml").read_text())
        if d["kind"] == "Role"
    )
    rules = [r for r in role["rules"] if "jobs/finalizers" not in r["resources"]]
    admin = plane.control.client()
    core, rbac = k.CoreV1Api(admin), k.RbacAuthorizationV1Api(admin)
    for create in (
        lambda: core.create_namespaced_service_account(
            "trainport", k.V1ServiceAccount.model_validate({"metadata": {"name": name}})
        ),
        lambda: rbac.create_namespaced_role(
            NAMESPACE, k.V1Role.model_validate({"metadata": {"name": name}, "rules": rules})
        ),
        lambda: rbac.create_namespaced_role_binding(
            NAMESPACE,
            k.V1RoleBinding.model_validate(
                {
                    "metadata": {"name": name},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": name,
                    },
                    "subjects": [
                        {"kind": "ServiceAccount", "name": name, "namespace": "trainport"}
                    ],
                }
            ),
        ),
    ):
        try:
            create()
        except ApiException as error:
            if error.status != 409:
                raise
    apis = Apis.from_client(plane.control.client(service_account_token(plane.control, name)), 5, 5)
    config = ClusterConfig(namespace=NAMESPACE, default_image=IMAGE, installation="old-role")
    return KubernetesExecutor(
        apis, config, log_archive(real.settings), real.settings.state_dir / "old-role"
    )


def test_the_worker_s_identity_holds_only_what_the_role_grants(plane: Plane) -> None:
    worker = plane.control.client(plane.worker_token)
    core = k.CoreV1Api(worker)
    for forbidden in (
        lambda: core.list_namespaced_secret("kube-system"),
        lambda: core.list_namespaced_pod("default"),
        lambda: core.create_node(k.V1Node(metadata=k.V1ObjectMeta(name="not-mine"))),
        lambda: core.list_namespaced_secret(NAMESPACE),  # get, create, patch: never list
    ):
        with pytest.raises(ApiException) as refused:
            forbidden()
        assert refused.value.status == 403
    assert core.list_node().items  # the inventory's ClusterRole


def test_every_manifest_passes_a_server_side_dry_run_with_the_worker_s_identity(
    plane: Plane,
) -> None:
    """1.20 accepts them, and silently drops what it does not know (`completionMode`): the
    reason a multi-node run must be refused here rather than run as unindexed pods."""
    apis = Apis.from_client(plane.control.client(plane.worker_token), 5, 5)
    request = launch_request(nodes=2, image=IMAGE, compute={"nodes": 2, "gpus_per_node": 1})
    built = build_attempt(request, ClusterConfig(namespace=NAMESPACE))
    job = read_json(apis.batch.create_namespaced_job, NAMESPACE, built.job, dry_run="All")
    read_json(apis.core.create_namespaced_service, NAMESPACE, built.service, dry_run="All")
    with_secret = replace(request, secrets=LaunchSecrets({"token": "v"}, {"token": "org.token"}))
    secret = build_org_secret(with_secret, ClusterConfig(namespace=NAMESPACE), NAMESPACE)
    read_json(apis.core.create_namespaced_secret, NAMESPACE, secret, dry_run="All")
    assert job["spec"]["completions"] == 2
    assert "completionMode" not in job["spec"]  # dropped by a server without Indexed Jobs


# -- what this server cannot do ------------------------------------------------------------------


def test_a_multi_node_run_is_refused_saying_what_the_cluster_lacks(real: Real) -> None:
    run_id = real.submit(nodes=2, max_retries=2)
    run = real.drive(run_id, {"failed", "succeeded"}, timeout=15)
    assert (run["status"], run["status_reason"]) == ("failed", "spec_refused")
    assert "Indexed" in run["status_message"] or "completionMode" in run["status_message"]
    assert len(run["attempts"]) == 1


def test_the_cluster_s_server_version_is_recorded_and_shown(real: Real) -> None:
    real.step()  # the scheduler registers the cluster
    with session_scope(app_sessionmaker(app_of(real.api))) as session:
        row = session.get(Cluster, CLUSTER)
        assert row is not None
        recorded = {c.name: getattr(row, c.name) for c in row.__table__.columns}
    assert "1.20" in json.dumps(recorded, default=str)
    assert "1.20" in real.api.get("/readyz").text


def test_a_run_past_its_max_duration_is_stopped(real: Real) -> None:
    run_id = real.submit(max_retries=0, max_duration=2)
    real.kubelet.fate(run_id, exit_code=None)
    run = real.drive(run_id, {"failed", "succeeded"}, timeout=20)
    assert (run["status"], run["status_reason"]) == ("failed", "max_duration_exceeded")


def test_time_spent_pending_does_not_count_against_max_duration(real: Real) -> None:
    run_id = real.submit(max_retries=0, max_duration=3)
    real.kubelet.fate(run_id, exit_code=0, pending_seconds=5)  # unscheduled past max_duration
    run = real.drive(run_id, {"failed", "succeeded"}, timeout=20)
    assert (run["status"], run["status_reason"]) == ("succeeded", "completed")


def test_following_many_pods_logs_keeps_its_connections(
    real: Real, caplog: pytest.LogCaptureFixture
) -> None:
    """Every running pod's log is followed on one connection pool: it must hold them all, or
    each follow's connection is thrown away with a warning (and a new TLS handshake)."""
    caplog.set_level(logging.WARNING, logger="urllib3")
    run_ids = [real.submit() for _ in range(12)]
    for run_id in run_ids:
        real.kubelet.fate(run_id, exit_code=None)
    for run_id in run_ids:
        real.drive(run_id, {"running"})
    eventually(lambda: len(real.executor.logs._following) == len(run_ids), what="12 followers")
    for run_id in run_ids:
        real.kubelet.end(run_id, 0)
    for run_id in run_ids:
        real.drive(run_id, {"succeeded"})
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


# -- what a pod leaves (issue 14) ---------------------------------------------------------------


def test_a_run_with_outputs_is_a_wrapped_pod_the_real_server_admits_and_settles(
    real: Real,
) -> None:
    """The wrapper that uploads outputs and TensorBoard files (core/outputs/pod_upload.py) is the
    trainer's command in a Job the real server validates and admits; its pod's OOMKilled still
    reads as `oom_killed`, and an attempt whose pod uploaded nothing settles as any other."""
    spec = {"outputs": ["out/**"], "metrics": {"tensorboard_dir": "tb"}}
    run = create_run(
        real.api, real.tenant, image=IMAGE, compute={"nodes": 1}, scheduling={"max_retries": 1},
        **spec,
    )  # fmt: skip
    run_id = str(run["id"])
    real.kubelet.fate(run_id, 1, exit_code=None)
    real.drive(run_id, {"running"})
    [pod] = pods_of_run(real, run_id)
    [trainer] = pod["spec"]["containers"]
    assert trainer["command"][:2] == ["python3", "-c"]  # admitted by the real server
    real.kubelet.end(run_id, 137, "OOMKilled")  # every pod of the run, from now on...
    real.kubelet.fate(run_id, 2, exit_code=0)  # ...but the retry's
    done = real.drive(run_id, {"succeeded", "failed"})
    assert attempts(done)[0] == (1, "failed", "oom_killed")
    assert done["status"] == "succeeded", attempts(done)
    listing = real.api.get(f"/v1/runs/{run_id}/outputs", headers=real.tenant.headers).json()
    assert listing["data"] == []  # the stand-in kubelet runs nothing, so nothing was uploaded

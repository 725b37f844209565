"""The executor against the fake API server, with the simulator playing the cluster."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from core.kubernetes import naming
from core.runs.states import StatusReason
from core.secrets.schemas import LaunchSecrets
from tests.k8s.cluster import ClusterSimulator
from tests.k8s.fake_api import FakeApiServer
from tests.support.kubernetes import (
    Clock,
    expect_seen,
    launch_request,
    log_finished,
    outcome_after,
    seen,
    stored_log,
    wait_until,
)
from workers.executors.base import AttemptPhase, classify_attempt
from workers.executors.kubernetes.executor import CANCEL_WHY, KubernetesExecutor


def run_steps(cluster: ClusterSimulator, count: int) -> None:
    for _ in range(count):
        cluster.step()


def test_a_two_node_run_succeeds_with_both_ranks_logs(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    request = launch_request(nodes=2)
    executor.launch(request)
    run_steps(cluster, 2)  # pods created and started
    running = outcome_after(executor, request, "running")
    assert running.reason is StatusReason.RUNNING
    run_steps(cluster, 2)
    done = outcome_after(executor, request, "succeeded")
    assert done.reason is StatusReason.COMPLETED
    executor.cleanup(request.run_id, request.attempt)
    for rank in (0, 1):
        assert log_finished(executor, request.run_id, 1, rank)
        assert f"rank {rank} working" in stored_log(executor, request.run_id, 1, rank)
    assert not cluster.jobs()
    assert not cluster.pods()


def test_launch_twice_adopts_the_same_job(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    request = launch_request()
    executor.launch(request)
    executor.launch(request)
    assert len(cluster.jobs()) == 1
    assert classify_attempt(expect_seen(executor, request).ranks).phase is AttemptPhase.STARTING


def test_a_different_job_under_the_same_name_fails_the_attempt(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    request = launch_request()
    executor.launch(request)
    changed = launch_request(nodes=3)
    changed = type(request)(request.run_id, request.org_id, 1, changed.spec, request.env)
    executor.launch(changed)
    outcome = classify_attempt(expect_seen(executor, request).ranks)
    assert outcome.phase is AttemptPhase.FAILED or outcome.reason is StatusReason.SYSTEM_ERROR
    assert "spec hash" in outcome.message


def test_oom_on_rank_1_fails_the_gang_naming_rank_1(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    cluster.fates = {0: "run", 1: "oom"}
    request = launch_request(nodes=2)
    executor.launch(request)
    run_steps(cluster, 3)
    outcome = outcome_after(executor, request, "failed")
    assert outcome.reason is StatusReason.OOM_KILLED
    assert "rank 1" in outcome.message
    assert not [p for p in cluster.pods() if p["status"]["phase"] == "Running"]


def test_image_pull_backoff_fails_fast(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    cluster.fates = {0: "image_pull", 1: "image_pull"}
    request = launch_request(nodes=2)
    executor.launch(request)
    run_steps(cluster, 2)
    outcome = outcome_after(executor, request, "failed")
    assert outcome.reason is StatusReason.IMAGE_PULL_FAILED
    assert "ImagePullBackOff" in outcome.message


def test_unschedulable_waits_then_fails_past_the_timeout(
    executor: KubernetesExecutor, cluster: ClusterSimulator, clock: Clock
) -> None:
    cluster.fates = {0: "unschedulable", 1: "unschedulable"}
    request = launch_request(nodes=2, compute={"nodes": 2, "gpus_per_node": 8})
    executor.launch(request)
    run_steps(cluster, 2)
    wait_until(executor, lambda: "Insufficient" in str(seen(executor, request)))
    assert classify_attempt(expect_seen(executor, request).ranks).phase is AttemptPhase.STARTING
    clock.advance(61)
    outcome = classify_attempt(expect_seen(executor, request).ranks)
    assert outcome.reason is StatusReason.UNSCHEDULABLE
    assert "0/2 nodes are available" in outcome.message


def test_eviction_is_a_system_failure(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    cluster.fates = {0: "run", 1: "evict"}
    request = launch_request(nodes=2)
    executor.launch(request)
    run_steps(cluster, 3)
    outcome = outcome_after(executor, request, "system_failed")
    assert outcome.reason is StatusReason.EVICTED


def test_cleanup_copies_a_still_running_rank_s_log_without_waiting_out_its_stream(
    make_executor: Callable[..., KubernetesExecutor], cluster: ClusterSimulator
) -> None:
    executor = make_executor(watch_timeout=600)  # past pytest's timeout, were it waited out
    cluster.fates = {0: "run", 1: "evict"}
    request = launch_request(nodes=2)
    executor.launch(request)
    run_steps(cluster, 3)
    outcome_after(executor, request, "system_failed")
    wait_until(executor, lambda: bool(executor.logs._streams))  # rank 0's log is being followed
    executor.cleanup(request.run_id, request.attempt)
    assert log_finished(executor, request.run_id, request.attempt, 0)
    assert "rank 0 working" in stored_log(executor, request.run_id, request.attempt, 0)


def test_deadline_exceeded_is_max_duration_exceeded(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    cluster.fates = {0: "run", 1: "run"}
    request = launch_request(nodes=2, scheduling={"max_duration": 60})
    executor.launch(request)
    run_steps(cluster, 2)
    outcome_after(executor, request, "running")
    cluster.fail_job(cluster.jobs()[0], "DeadlineExceeded", "Job was active longer than specified")
    run_steps(cluster, 1)
    outcome = outcome_after(executor, request, "failed")
    assert outcome.reason is StatusReason.MAX_DURATION_EXCEEDED


def test_cancel_is_done_only_when_the_pods_are_gone(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    cluster.fates = {0: "run", 1: "run"}
    request = launch_request(nodes=2)
    executor.launch(request)
    run_steps(cluster, 2)
    outcome_after(executor, request, "running")
    assert executor.cancel(request.run_id, 1) is False  # pods are terminating
    assert cluster.jobs()[0]["metadata"]["deletionTimestamp"]
    run_steps(cluster, 1)  # the kubelet finishes the graceful deletion
    assert executor.cancel(request.run_id, 1) is True
    assert executor.cancel(request.run_id, 1) is True  # idempotent: 404 is done
    assert not cluster.jobs()
    assert not cluster.pods()


def test_a_restarted_worker_rebuilds_its_view_from_a_list(
    make_executor: Callable[..., KubernetesExecutor], cluster: ClusterSimulator
) -> None:
    cluster.fates = {0: "run", 1: "run"}
    first = make_executor()
    request = launch_request(nodes=2)
    first.launch(request)
    run_steps(cluster, 2)
    outcome_after(first, request, "running")
    first.stop()
    second = make_executor()
    assert classify_attempt(expect_seen(second, request).ranks).phase is AttemptPhase.RUNNING
    second.launch(request)  # a redelivered launch adopts
    assert len(cluster.jobs()) == 1


def test_a_dropped_watch_resumes_and_410_lists_again(
    make_executor: Callable[..., KubernetesExecutor],
    cluster: ClusterSimulator,
    server: FakeApiServer,
) -> None:
    executor = make_executor()
    cluster.fates = {0: "run", 1: "succeed"}
    request = launch_request(nodes=2)
    executor.launch(request)
    run_steps(cluster, 2)
    outcome_after(executor, request, "running")
    server.drop_watches()
    lists_before = server.store.requests["GET pods"]
    server.store.compact()
    cluster.fates = {0: "succeed", 1: "succeed"}
    server.drop_watches()
    run_steps(cluster, 2)
    outcome_after(executor, request, "succeeded")
    assert server.store.requests["GET pods"] > lists_before


def test_the_api_is_not_polled_per_pod(
    executor: KubernetesExecutor, cluster: ClusterSimulator, server: FakeApiServer
) -> None:
    cluster.fates = {0: "run", 1: "run"}
    request = launch_request(nodes=2)
    executor.launch(request)
    run_steps(cluster, 2)
    outcome_after(executor, request, "running")
    before = sum(server.store.requests.values())
    for _ in range(50):
        executor.observe()
    assert sum(server.store.requests.values()) - before <= 4  # log follows, not polls


def test_labels_select_exactly_one_attempts_pods(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    request = launch_request(nodes=2)
    executor.launch(request)
    run_steps(cluster, 1)
    service = cluster.http.get(
        f"/api/v1/namespaces/trainport-runs/services/{naming.attempt_name(request.run_id, 1)}"
    ).json()
    for pod in cluster.pods():
        labels = pod["metadata"]["labels"]
        assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
    assert service["metadata"]["ownerReferences"][0]["kind"] == "Job"


def test_a_pods_log_500_stalls_neither_its_cleanup_nor_other_runs(
    executor: KubernetesExecutor,
    cluster: ClusterSimulator,
    server: FakeApiServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trainport.executors.kubernetes")
    cluster.fates = {0: "run"}
    broken, healthy = launch_request(nodes=1), launch_request(nodes=1)
    server.fail_logs(naming.attempt_name(broken.run_id, 1))  # its kubelet is unreachable
    executor.launch(broken)
    executor.launch(healthy)
    run_steps(cluster, 2)
    outcome_after(executor, broken, "running")
    prefix = naming.attempt_name(broken.run_id, 1)
    uid = next(
        p["metadata"]["uid"] for p in cluster.pods() if p["metadata"]["name"].startswith(prefix)
    )
    for _ in range(5):  # observe starts a follower each time; each one meets the 500
        executor.observe()
        wait_until(executor, lambda: uid not in executor.logs._following)
    cluster.fates = {0: "succeed"}
    run_steps(cluster, 1)
    outcome_after(executor, broken, "succeeded")
    outcome_after(executor, healthy, "succeeded")
    executor.cleanup(broken.run_id, 1)  # must not raise: the others' cleanups come after it
    executor.cleanup(healthy.run_id, 1)
    assert not cluster.jobs()
    assert "rank 0 working" in stored_log(executor, healthy.run_id, 1, 0)
    assert log_finished(executor, broken.run_id, 1, 0)
    assert "could not be copied" in stored_log(executor, broken.run_id, 1, 0)
    follower = [r for r in caplog.records if "cannot follow" in r.getMessage()]
    assert [r.levelno for r in follower] == [logging.DEBUG], follower
    assert not [r for r in caplog.records if r.exc_info]  # one quiet line, no traceback


def test_a_pod_without_a_log_yet_is_one_debug_line_and_a_warning_only_if_it_persists(
    executor: KubernetesExecutor,
    cluster: ClusterSimulator,
    server: FakeApiServer,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real server answers 400 while the container is still being created; the followers
    retry on every observe (every reconcile pass, about once a second)."""
    caplog.set_level(logging.DEBUG, logger="trainport.executors.kubernetes")
    cluster.fates = {0: "run"}
    request = launch_request(nodes=1)
    server.fail_logs(naming.attempt_name(request.run_id, 1), code=400)
    executor.launch(request)
    run_steps(cluster, 2)
    outcome_after(executor, request, "running")
    [uid] = [p["metadata"]["uid"] for p in cluster.pods()]

    def observe(times: int) -> list[tuple[int, str]]:
        for _ in range(times):
            executor.observe()
            wait_until(executor, lambda: uid not in executor.logs._following)
        lines = [r for r in caplog.records if "cannot follow" in r.getMessage()]
        assert not [r for r in lines if r.exc_info]  # never a traceback
        return [(r.levelno, r.getMessage()) for r in lines]

    [(level, message)] = observe(5)
    assert level == logging.DEBUG
    assert "HTTP 400" in message
    clock.advance(61)
    assert [level for level, _ in observe(5)] == [logging.DEBUG, logging.WARNING]
    assert "for 61s now" in observe(1)[-1][1]


def test_a_job_deleted_behind_trainport_s_back_is_a_platform_failure(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    cluster.fates = {0: "run", 1: "run"}
    request = launch_request(nodes=2)
    executor.launch(request)
    run_steps(cluster, 2)
    outcome_after(executor, request, "running")
    name = naming.attempt_name(request.run_id, 1)
    cluster.http.delete(f"/apis/batch/v1/namespaces/trainport-runs/jobs/{name}")  # as kubectl
    cluster.kill_deleted_pods()  # SIGTERM: both ranks exit 143 while marked for deletion
    wait_until(
        executor, lambda: all(p["status"]["phase"] == "Failed" for p in executor.pods.objects())
    )
    outcome = outcome_after(executor, request, "system_failed")
    assert outcome.reason is StatusReason.DELETED_EXTERNALLY
    assert name in outcome.message
    assert 143 not in [r.exit_code for r in expect_seen(executor, request).ranks]


def test_a_rank_the_job_controller_stops_does_not_hide_the_one_that_failed(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    """Rank 0 is stopped (SIGTERM, exit 143) because rank 1 ran out of memory: rank 1 speaks."""
    cluster.fates = {0: "run", 1: "oom"}
    request = launch_request(nodes=2)
    executor.launch(request)
    run_steps(cluster, 2)  # both ranks running
    cluster.step(finish_deletions=False)  # rank 1 OOMs; the Job controller deletes rank 0
    cluster.kill_deleted_pods()
    wait_until(
        executor, lambda: all(p["status"]["phase"] == "Failed" for p in executor.pods.objects())
    )
    outcome = outcome_after(executor, request, "failed")
    assert outcome.reason is StatusReason.OOM_KILLED
    assert "rank 1" in outcome.message


def test_two_installations_sharing_a_namespace_leave_each_other_s_jobs_alone(
    make_executor: Callable[..., KubernetesExecutor],
    cluster: ClusterSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trainport.executors.kubernetes")
    ours, theirs = make_executor(installation="ours"), make_executor(installation="theirs")
    cluster.fates = {0: "run"}
    mine, foreign = launch_request(nodes=1), launch_request(nodes=1)
    mine = replace(mine, secrets=LaunchSecrets({"token": "s3cr3t"}, {"token": "org.token"}))
    ours.launch(mine)
    theirs.launch(foreign)
    run_steps(cluster, 2)
    outcome_after(ours, mine, "running")
    outcome_after(theirs, foreign, "running")
    assert {o.run_id for o in ours.observe()} == {mine.run_id}  # never an orphan to stop
    assert {o.run_id for o in theirs.observe()} == {foreign.run_id}
    ns = "/api/v1/namespaces/trainport-runs"
    objects = [*cluster.jobs(), *cluster.pods()]
    objects += cluster.http.get(f"{ns}/services").json()["items"]
    objects += cluster.http.get(f"{ns}/secrets").json()["items"]
    for obj in objects:
        run = obj["metadata"]["labels"].get(naming.RUN_ID_KEY, "")
        expected = "theirs" if run == naming.label_value(foreign.run_id) else "ours"
        assert obj["metadata"]["labels"][naming.INSTALLATION_KEY] == expected, obj["kind"]
    assert ours.cancel(mine.run_id, 1) is False
    deletions = [r.getMessage() for r in caplog.records if "deleting Job" in r.getMessage()]
    assert deletions == [
        f"deleting Job {naming.attempt_name(mine.run_id, 1)} in trainport-runs: {CANCEL_WHY}"
    ]
    assert [j["metadata"].get("deletionTimestamp") is None for j in cluster.jobs()].count(True) == 1


def test_a_restarted_worker_settles_a_job_that_finished_while_it_was_away(
    make_executor: Callable[..., KubernetesExecutor],
    cluster: ClusterSimulator,
    server: FakeApiServer,
) -> None:
    """Re-listed Jobs carry no `kind` (nor, on older servers, `completionMode`): the list's
    own resource says what they are."""
    cluster.fates = {0: "run"}
    first = make_executor()
    request = launch_request(nodes=1, scheduling={"max_duration": 60})
    first.launch(request)
    run_steps(cluster, 2)
    outcome_after(first, request, "running")
    first.stop()
    job = cluster.jobs()[0]
    with server.store.changed:  # as a server without Indexed Jobs keeps it
        server.store.objects[("jobs", "trainport-runs", job["metadata"]["name"])]["spec"].pop(
            "completionMode"
        )
    cluster.fail_job(job, "DeadlineExceeded", "Job was active longer than specified")
    run_steps(cluster, 1)  # its pods are gone; only the failed Job is left
    assert not cluster.pods()
    second = make_executor()
    outcome = outcome_after(second, request, "failed")
    assert outcome.reason is StatusReason.MAX_DURATION_EXCEEDED


def test_a_launch_whose_service_is_refused_fails_the_attempt_saying_why(
    executor: KubernetesExecutor, cluster: ClusterSimulator, server: FakeApiServer
) -> None:
    server.store.enforce_owner_references = True  # and the Role lacks jobs/finalizers
    request = launch_request(nodes=2)
    executor.launch(request)  # does not raise: a redelivery would meet the same refusal
    outcome = outcome_after(executor, request, "failed")
    assert outcome.reason is StatusReason.SYSTEM_ERROR
    assert "headless Service" in outcome.message
    assert "jobs/finalizers" in outcome.message
    executor.cleanup(request.run_id, 1)
    assert not cluster.jobs()


def test_a_multi_node_run_on_a_server_without_indexed_jobs_is_refused_and_its_job_deleted(
    make_executor: Callable[..., KubernetesExecutor],
    cluster: ClusterSimulator,
    server: FakeApiServer,
) -> None:
    """A 1.20 server drops `completionMode`: the Job would run with an empty NODE_RANK on
    every pod and report success. What the server kept decides, not what was sent."""
    server.pretend_version("v1.20.2")
    executor = make_executor(cluster_name="old")
    request = launch_request(nodes=2)
    executor.launch(request)
    assert not cluster.jobs()  # deleted again before any pod could start
    outcome = outcome_after(executor, request, "failed")
    assert outcome.reason is StatusReason.SPEC_REFUSED
    assert outcome.message.startswith(
        "cluster old (Kubernetes v1.20.2) has no Indexed Jobs (it dropped the Job's "
        "completionMode); multi-node runs need Kubernetes >= 1.22"
    )
    executor.cleanup(request.run_id, 1)


def test_a_single_node_run_on_a_server_without_indexed_jobs_runs_as_rank_0(
    make_executor: Callable[..., KubernetesExecutor],
    cluster: ClusterSimulator,
    server: FakeApiServer,
) -> None:
    """Its pods carry no completion index; the Job has one pod, so that pod is rank 0 (seen
    running, its log followed) rather than never seen at all."""
    server.pretend_version("v1.20.2")
    executor = make_executor(cluster_name="old")
    cluster.fates = {0: "run"}
    request = launch_request(nodes=1)
    executor.launch(request)
    assert "completionMode" not in cluster.jobs()[0]["spec"]
    cluster.indexed = False  # a 1.20 Job controller: no completion-index annotation or label
    run_steps(cluster, 2)
    outcome_after(executor, request, "running")
    cluster.fates = {0: "succeed"}
    run_steps(cluster, 1)
    outcome_after(executor, request, "succeeded")
    executor.cleanup(request.run_id, 1)
    assert "rank 0 working" in stored_log(executor, request.run_id, 1, 0)


def test_a_restarted_worker_resumes_a_pods_log_where_the_database_says_it_stopped(
    make_executor: Callable[..., KubernetesExecutor],
    cluster: ClusterSimulator,
    server: FakeApiServer,
    tmp_path: Path,
) -> None:
    first = make_executor()
    cluster.fates = {0: "run"}
    request = launch_request(nodes=1)
    first.launch(request)
    run_steps(cluster, 3)  # started, then one line of work
    outcome_after(first, request, "running")
    wait_until(first, lambda: "rank 0 working" in stored_log(first, request.run_id, 1, 0))
    first.stop()  # the worker's pod goes, and its followers with it
    for uid in list(first.logs._streams):
        first.logs._interrupt(uid)
    [pod] = cluster.pods()
    server.append_log(cluster.ns, pod["metadata"]["name"], "while no worker looked")

    second = make_executor(state_dir=tmp_path / "new-pod")  # nothing of the first pod's
    outcome_after(second, request, "running")
    cluster.fates = {0: "succeed"}
    run_steps(cluster, 1)
    outcome_after(second, request, "succeeded")
    second.cleanup(request.run_id, 1)

    kubelet = [text for _, text in server.store.logs[(cluster.ns, pod["metadata"]["name"])]]
    stored = [
        line.split(" ", 2)[2] for line in stored_log(second, request.run_id, 1, 0).splitlines()
    ]
    assert stored == kubelet  # every line, once, in order
    assert log_finished(second, request.run_id, 1, 0)

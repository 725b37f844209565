"""Time limits on Kubernetes, driven by the real scheduler, launcher and reconciler (issue 13).

`scheduling.max_duration` counts only the time an attempt runs: an attempt that waits for a
node, an image or a volume is judged by its own limit, `scheduling.max_pending` (else the
operator's TRAINPORT_MAX_PENDING_SECONDS), and ends `pending_timeout`, a platform failure the
system's retry policy retries. The clocks move by backdating the rows the reconciler reads
(when the attempt was launched, when the run went running), and by the simulator's `advance`.
"""

# ruff: noqa: F811 - the Kubernetes fixtures are imported by name; each test takes them as arguments

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from core.db import session_scope
from core.models import Run, RunAttempt, utcnow
from tests.factories import make_tenant
from tests.support.kubernetes_clusters import (  # noqa: F401 - fixtures, used as arguments
    Clusters,
    admit_and_launch,
    api,
    clusters,
    context,
    executor_for_cluster,
    h100_run,
    reconcile_until,
)
from tests.support.scheduling import sessions
from workers.reconciler import WorkerContext, reconcile_once


def _backdate(api: TestClient, run_id: str, seconds: float, *, launched: bool) -> None:
    """Move the attempt's launch (or the run's start of running) `seconds` into the past."""
    past = utcnow() - timedelta(seconds=seconds)
    with session_scope(sessions(api)) as session:
        if launched:
            session.execute(
                update(RunAttempt).where(RunAttempt.run_id == run_id).values(started_at=past)
            )
        else:
            session.execute(update(Run).where(Run.id == run_id).values(started_at=past))


def _rounds(api: TestClient, clusters: Clusters, ctx: WorkerContext, rounds: int = 3) -> None:
    executor = executor_for_cluster("west", clusters.settings)
    for _ in range(rounds):
        clusters.west.step()
        executor.pods.wait_for(lambda: False, 0.05)
        reconcile_once(ctx)


def test_time_spent_pending_does_not_count_against_max_duration(
    api: TestClient, clusters: Clusters
) -> None:
    """Seen on a real API server: an unscheduled attempt ended max_duration_exceeded."""
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    clusters.west.fates = {0: "pending", 1: "pending"}
    run_id = h100_run(api, tenant, max_duration=60)
    admit_and_launch(api, ctx, run_id)
    _rounds(api, clusters, ctx)
    clusters.west.advance(600)  # ten minutes waiting for a node, as the Job controller counts
    _backdate(api, run_id, 600, launched=True)
    _rounds(api, clusters, ctx)
    run = api.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()
    assert (run["status"], run["status_reason"]) == ("starting", "launching")
    clusters.west.fates = {0: "run", 1: "run"}
    run = reconcile_until(api, tenant, ctx, "west", run_id, {"running", "failed"})
    assert run["status"] == "running"


def test_running_past_max_duration_stops_the_attempt_with_its_own_reason(
    api: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    clusters.west.fates = {0: "run", 1: "run"}
    run_id = h100_run(api, tenant, max_duration=60)
    admit_and_launch(api, ctx, run_id)
    reconcile_until(api, tenant, ctx, "west", run_id, {"running"})
    _backdate(api, run_id, 59, launched=False)
    _rounds(api, clusters, ctx)
    assert api.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()["status"] == "running"
    _backdate(api, run_id, 61, launched=False)
    run = reconcile_until(api, tenant, ctx, "west", run_id, {"failed", "queued"})
    assert (run["status"], run["status_reason"]) == ("failed", "max_duration_exceeded")
    assert "ran for 1m" in run["status_message"]
    assert [(a["outcome"], a["reason"]) for a in run["attempts"]] == [
        ("failed", "max_duration_exceeded")
    ]
    assert clusters.west.jobs() == []  # stopped: its pods are gone, not left running


def test_an_attempt_pending_past_max_pending_ends_pending_timeout_and_is_retried(
    api: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    clusters.west.fates = {0: "unschedulable", 1: "unschedulable"}
    run_id = h100_run(api, tenant, max_pending="5m", max_retries=0)
    admit_and_launch(api, ctx, run_id)
    _rounds(api, clusters, ctx)
    _backdate(api, run_id, 299, launched=True)
    _rounds(api, clusters, ctx)
    assert api.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()["status"] == "starting"
    _backdate(api, run_id, 301, launched=True)
    run = reconcile_until(api, tenant, ctx, "west", run_id, {"queued", "failed"})
    assert (run["status"], run["status_reason"]) == ("queued", "retrying")  # not max_retries: 0
    [attempt] = run["attempts"]
    assert (attempt["outcome"], attempt["reason"]) == ("system_failed", "pending_timeout")
    assert "scheduling.max_pending (5m)" in attempt["message"]
    assert "0/2 nodes are available" in attempt["message"]  # the scheduler's own words
    assert clusters.west.jobs() == []


def test_pending_timeout_fails_the_run_when_system_retries_are_off(
    api: TestClient, clusters: Clusters
) -> None:
    """The operator's default applies when the run sets no max_pending."""
    settings = clusters.settings.model_copy(update={"max_pending_seconds": 120})
    tenant, ctx = make_tenant(api), context(api, settings)
    clusters.west.fates = {0: "pending", 1: "pending"}
    run_id = h100_run(api, tenant, retry_on_system_failure=False)
    admit_and_launch(api, ctx, run_id)
    _backdate(api, run_id, 121, launched=True)
    run = reconcile_until(api, tenant, ctx, "west", run_id, {"queued", "failed"})
    assert (run["status"], run["status_reason"]) == ("failed", "pending_timeout")
    assert "TRAINPORT_MAX_PENDING_SECONDS (2m)" in run["status_message"]

"""Preemption, queue time limits and retry by exit code, end to end on the fake Kubernetes
cluster with the real scheduler, launcher and reconciler (issue 20)."""

# ruff: noqa: F811 - the Kubernetes fixtures are imported by name; each test takes them as arguments

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from core.db import session_scope
from core.models import Run, RunAttempt, RunEvent, WebhookDelivery, utcnow
from tests.factories import PUBLIC_HOOK, make_tenant
from tests.support.kubernetes_clusters import (  # noqa: F401 - fixtures, used as arguments
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
from workers import scheduler
from workers.reconciler import launch_attempt


def test_a_high_priority_run_preempts_a_preemptible_one_and_takes_its_nodes(
    api: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    hook = {"url": PUBLIC_HOOK, "event_types": ["run.preempted"]}
    assert api.post("/v1/webhooks", json=hook, headers=tenant.headers).status_code == 201
    clusters.west.fates = {0: "run", 1: "run"}
    victim = h100_run(api, tenant, preemptible=True, priority="low", max_retries=0)
    admit_and_launch(api, ctx, victim)
    reconcile_until(api, tenant, ctx, "west", victim, {"running"})
    [first] = [job_env(job) for job in clusters.west.jobs()]
    save_checkpoint(api, first, step=50)
    heartbeat(api, first, step=60)
    urgent = h100_run(api, tenant, priority="high")
    assert scheduler.run_pass(ctx.factory, ctx.settings, [urgent]).admitted == []
    queued = api.get(f"/v1/runs/{urgent}", headers=tenant.headers).json()
    assert queued["queue"]["reason"] == "preempting"
    run = reconcile_until(api, tenant, ctx, "west", victim, {"queued", "failed"})
    assert (run["status"], run["status_reason"]) == ("queued", "preempted")
    assert run["attempts"][0]["outcome"] == "preempted"
    assert clusters.west.pods() == []  # the victim's pods were deleted
    with session_scope(ctx.factory) as session:
        events = session.scalars(
            select(RunEvent).where(RunEvent.run_id == victim).order_by(RunEvent.id)
        ).all()
    assert {"preempted_by": urgent, "attempt": 1} in [e.data for e in events]
    with session_scope(ctx.factory) as session:  # and webhooks say who preempted whom
        hooked = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.org_id == tenant.org_id)
        ).all()
    told = [(d.event_type, d.payload["data"]["run"]["id"]) for d in hooked]
    assert told == [("run.preempted", victim)]
    assert hooked[0].payload["data"]["preempted_by"] == urgent
    admitted = scheduler.run_pass(ctx.factory, ctx.settings).admitted
    assert [a.run_id for a in admitted] == [urgent]
    with session_scope(ctx.factory) as session:
        grant = session.get(RunAttempt, (urgent, 1))
        assert grant is not None
        assert grant.placement == {"h0": 4, "h1": 4}
    victim_now = api.get(f"/v1/runs/{victim}", headers=tenant.headers).json()
    assert victim_now["status"] == "queued"  # not failed: max_retries 0 was not spent
    assert victim_now["queue"]["reason"] == "no_capacity"
    launch_attempt(ctx, urgent, 1)
    clusters.west.step()  # the Job controller creates the pods,
    clusters.west.step()  # the scheduler binds them to the nodes the gang was given
    placed = {pod["spec"].get("nodeName") for pod in clusters.west.pods()}
    assert placed == {"h0", "h1"}
    clusters.west.fates = {}
    reconcile_until(api, tenant, ctx, "west", urgent, {"succeeded"})
    assert admit_and_launch(api, ctx, victim) == 2  # resumed from its last checkpoint
    [second] = [
        job_env(job) for job in clusters.west.jobs() if job_env(job)["TRAINPORT_ATTEMPT"] == "2"
    ]
    heartbeat(api, second, step=50, resumed_from_step=latest_checkpoint(api, second))
    run = reconcile_until(api, tenant, ctx, "west", victim, {"succeeded"})
    resumed = [(a["outcome"], a["resumed_from_step"], a["steps_lost"]) for a in run["attempts"]]
    assert resumed == [("preempted", None, None), ("succeeded", 50, 10)]
    assert run["attempts"][0]["preempted_by"] == urgent


def test_a_non_preemptible_run_is_never_a_victim(api: TestClient, clusters: Clusters) -> None:
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    clusters.west.fates = {0: "run", 1: "run"}
    pinned = h100_run(api, tenant, priority="low")
    admit_and_launch(api, ctx, pinned)
    urgent = h100_run(api, tenant, priority="high")
    assert scheduler.run_pass(ctx.factory, ctx.settings, [urgent]).admitted == []
    queued = api.get(f"/v1/runs/{urgent}", headers=tenant.headers).json()
    assert queued["queue"]["reason"] == "no_capacity"
    with session_scope(ctx.factory) as session:
        assert session.get_one(RunAttempt, (pinned, 1)).preempted_by is None


def test_a_queued_run_past_max_pending_fails_pending_timeout(
    api: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    clusters.west.fates = {0: "run", 1: "run"}
    holder = h100_run(api, tenant)
    admit_and_launch(api, ctx, holder)
    waiting = h100_run(api, tenant, max_pending=60)
    scheduler.run_pass(ctx.factory, ctx.settings, [waiting])
    with session_scope(ctx.factory) as session:
        past = utcnow() - timedelta(seconds=61)
        session.execute(update(Run).where(Run.id == waiting).values(queued_at=past))
    scheduler.run_pass(ctx.factory, ctx.settings)
    run = api.get(f"/v1/runs/{waiting}", headers=tenant.headers).json()
    assert (run["status"], run["status_reason"]) == ("failed", "pending_timeout")
    assert "scheduling.max_pending (1m)" in run["status_message"]


def test_the_queue_answer_gives_an_eta_from_running_max_duration(
    api: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    clusters.west.fates = {0: "run", 1: "run"}
    holder = h100_run(api, tenant, max_duration=3600)
    admit_and_launch(api, ctx, holder)
    reconcile_until(api, tenant, ctx, "west", holder, {"running"})
    waiting = h100_run(api, tenant)
    scheduler.run_pass(ctx.factory, ctx.settings, [waiting])
    queue = api.get(f"/v1/runs/{waiting}", headers=tenant.headers).json()["queue"]
    started = api.get(f"/v1/runs/{holder}", headers=tenant.headers).json()["started_at"]
    assert queue["reason"] == "no_capacity"
    assert queue["eta"] is not None
    assert queue["eta"][:16] == _plus_hour(started)[:16]


def _plus_hour(text: str) -> str:
    return (datetime.fromisoformat(text.replace("Z", "+00:00")) + timedelta(hours=1)).isoformat()


def test_the_eta_comes_sooner_when_the_running_work_s_progress_says_so(
    api: TestClient, clusters: Clusters
) -> None:
    tenant, ctx = make_tenant(api), context(api, clusters.settings)
    clusters.west.fates = {0: "run", 1: "run"}
    holder = h100_run(api, tenant, max_duration=3600)
    admit_and_launch(api, ctx, holder)
    reconcile_until(api, tenant, ctx, "west", holder, {"running"})
    [env] = [job_env(job) for job in clusters.west.jobs()]
    heartbeat(api, env, step=10, total_steps=1000)
    heartbeat(api, env, step=990, total_steps=1000)  # fast: nearly done
    waiting = h100_run(api, tenant)
    scheduler.run_pass(ctx.factory, ctx.settings, [waiting])
    queue = api.get(f"/v1/runs/{waiting}", headers=tenant.headers).json()["queue"]
    eta = datetime.fromisoformat(queue["eta"].replace("Z", "+00:00"))
    assert eta < utcnow() + timedelta(minutes=5)  # long before its max_duration runs out

"""Admission: priority, fair share, FIFO, gangs, reservations for starved runs, and the
"why is my run pending" answers, on a database of each test's own (clusters are global)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from core.db import session_scope
from core.models import Run, RunAttempt, utcnow
from core.runs.attempts import AttemptOutcome, Ending, settle
from core.runs.states import StatusReason
from core.scheduling.clusters import Inventory, register_cluster
from tests.factories import Tenant, create_run, make_key, make_tenant
from tests.support.scheduling import Factory, admit, cluster, sessions, submit


def gpus(count: int, nodes: int = 1, **scheduling: Any) -> dict[str, Any]:
    compute = {"nodes": nodes, "gpus_per_node": count // nodes, "gpu_type": "a100"}
    return {"compute": compute, "scheduling": scheduling}


def finish(factory: Factory, run_id: str) -> None:
    with session_scope(factory) as session:
        run = session.get(Run, run_id, with_for_update=True)
        assert run is not None
        settle(session, run, Ending(AttemptOutcome.SUCCEEDED, StatusReason.COMPLETED, "done"), 3)


def queue(client: TestClient, tenant: Tenant, run_id: str) -> dict[str, Any]:
    run = client.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()
    assert run["status"] == "queued", run
    info: dict[str, Any] = run["queue"]
    return info


def org_name(client: TestClient, tenant: Tenant) -> str:
    name: str = client.get("/v1/me", headers=tenant.headers).json()["organization"]["name"]
    return name


def test_higher_priority_goes_first_even_when_submitted_later(fresh_client: TestClient) -> None:
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=1)
    older = submit(fresh_client, tenant, **gpus(1))
    urgent = submit(fresh_client, tenant, **gpus(1, priority="high"))
    assert admit(factory) == {urgent}
    assert queue(fresh_client, tenant, older)["reason"] == "no_capacity"


def test_the_org_with_less_recent_gpu_usage_goes_first_then_fifo(
    fresh_client: TestClient,
) -> None:
    factory = sessions(fresh_client)
    heavy, light = make_tenant(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=2)
    history = create_run(fresh_client, heavy)["id"]
    with session_scope(factory) as session:  # ten GPU-minutes an hour ago
        session.add(_finished_attempt(history, heavy, gpus=1, seconds=600))
    first, second = submit(fresh_client, heavy, **gpus(1)), submit(fresh_client, heavy, **gpus(1))
    late = submit(fresh_client, light, **gpus(1))
    assert queue(fresh_client, light, late)["position"] == 1
    # Third in the plan, but a tenant's position counts only the runs it may see (issue 15).
    assert queue(fresh_client, heavy, second)["position"] == 2
    assert admit(factory) == {late, first}  # interleaved by usage; FIFO inside the heavy org


def test_a_queue_position_counts_only_what_the_caller_may_see(fresh_client: TestClient) -> None:
    """Seen: a queued run's position counted other organisations' runs, so it told a tenant
    how busy the others were."""
    factory = sessions(fresh_client)
    busy, quiet = make_tenant(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=1)
    holder = submit(fresh_client, busy, **gpus(1))
    assert admit(factory) == {holder}
    for _ in range(3):
        submit(fresh_client, busy, **gpus(1))
    mine = submit(fresh_client, quiet, **gpus(1))
    info = queue(fresh_client, quiet, mine)
    assert info["position"] == 1  # three runs of another org are ahead, unseen
    assert info["reason"] == "no_capacity"
    assert busy.org_id not in info["detail"]
    made = fresh_client.post("/v1/projects", json={"name": "lab"}, headers=quiet.headers)
    assert made.status_code == 201, made.text
    lab = make_key(fresh_client, quiet, "member", project="lab")
    other_project = submit(fresh_client, quiet, **gpus(1))
    in_lab = submit(fresh_client, lab, **gpus(1))
    assert queue(fresh_client, quiet, in_lab)["position"] == 3  # the org's key sees its runs
    assert queue(fresh_client, lab, in_lab)["position"] == 1  # a scoped key its project's
    assert queue(fresh_client, quiet, other_project)["position"] == 2


def _finished_attempt(run_id: str, tenant: Tenant, gpus: int, seconds: int) -> RunAttempt:
    start = utcnow() - timedelta(hours=1)
    return RunAttempt(
        run_id=run_id, attempt=1, org_id=tenant.org_id, project_id=tenant.project_id,
        cluster="gpu", gpu_type="a100", gpus=gpus, cpu_slots=0, admitted_at=start,
        ended_at=start + timedelta(seconds=seconds), outcome="succeeded", where="gpu",
    )  # fmt: skip


def test_a_gang_is_admitted_whole_or_not_at_all(fresh_client: TestClient) -> None:
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=16, nodes=2)  # two nodes of 8
    holder = submit(fresh_client, tenant, **gpus(6))
    assert admit(factory) == {holder}
    gang = submit(fresh_client, tenant, **gpus(8, nodes=2))
    small = submit(fresh_client, tenant, **gpus(2))
    assert admit(factory) == {small}  # backfilled: the gang has not waited long enough
    assert queue(fresh_client, tenant, gang) == {
        "position": 1,
        "reason": "no_capacity",
        "detail": "needs 2 x 4 a100 on one cluster, best fit 1 x 8",
        "eta": None,
    }
    finish(factory, small)
    assert admit(factory) == set()  # 2 + 8 free: 10 GPUs, but only one node holds 4
    finish(factory, holder)
    assert admit(factory) == {gang}


def test_a_gang_needs_whole_nodes_not_a_total(fresh_client: TestClient) -> None:
    """Issue 20's finding: `nodes: 2, gpus_per_node: 8` was admitted onto nodes with
    4 + 4 + 4 + 4 free, and could not run."""
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    nodes = {f"n{i}": {"a100": 8} for i in range(4)}
    with session_scope(factory) as session:
        register_cluster(session, "gpu", "local", Inventory({"a100": 32}, 8, 4, nodes))
    holder = create_run(fresh_client, tenant)["id"]
    with session_scope(factory) as session:  # half of every node is held
        attempt = _finished_attempt(holder, tenant, gpus=16, seconds=0)
        attempt.ended_at, attempt.outcome, attempt.placement = None, None, dict.fromkeys(nodes, 4)
        session.add(attempt)
    gang = submit(fresh_client, tenant, **gpus(16, nodes=2))
    assert admit(factory) == set()
    assert queue(fresh_client, tenant, gang)["detail"] == (
        "needs 2 x 8 a100 on one cluster, best fit 2 x 4"
    )


def test_a_starved_large_run_holds_back_what_smaller_runs_would_take(
    fresh_client: TestClient,
) -> None:
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=8)
    holder = submit(fresh_client, tenant, **gpus(6))
    assert admit(factory) == {holder}
    large = submit(fresh_client, tenant, **gpus(8))
    small = submit(fresh_client, tenant, **gpus(2))
    an_hour = timedelta(hours=1)  # both have now waited past scheduler_starvation_seconds
    assert admit(factory, later=an_hour) == set()  # the 2 free GPUs are held for `large`
    finish(factory, holder)
    assert admit(factory, later=an_hour) == {large}
    finish(factory, large)
    assert admit(factory, later=an_hour) == {small}


def test_quota_exhausted_explains_whose_quota_and_how_full(fresh_client: TestClient) -> None:
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=8)
    fresh_client.put(
        f"/v1/orgs/{tenant.org_id}/quota", json={"max_gpus": 4}, headers=tenant.headers
    )
    running = submit(fresh_client, tenant, **gpus(4))
    assert admit(factory) == {running}
    waiting = submit(fresh_client, tenant, **gpus(2))
    assert admit(factory) == set()
    assert queue(fresh_client, tenant, waiting) == {
        "position": 1,
        "reason": "quota_exhausted",
        "detail": f"4 of 4 GPUs of org {org_name(fresh_client, tenant)} in use",
        "eta": None,
    }
    quota = fresh_client.get(f"/v1/orgs/{tenant.org_id}/quota", headers=tenant.headers).json()
    assert quota["usage"] == {"gpus": 4, "running_runs": 1}


def test_running_runs_and_project_quotas_are_enforced_and_explained(
    fresh_client: TestClient,
) -> None:
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=8)
    org_url = f"/v1/orgs/{tenant.org_id}"
    limit(fresh_client, tenant, f"{org_url}/quota", max_running_runs=3)
    limit(fresh_client, tenant, f"{org_url}/projects/default/quota", max_gpus=1)
    cpu_run, gpu_run = submit(fresh_client, tenant), submit(fresh_client, tenant, **gpus(1))
    second_gpu = submit(fresh_client, tenant, **gpus(1))
    assert admit(factory) == {cpu_run, gpu_run}
    detail = queue(fresh_client, tenant, second_gpu)["detail"]
    assert detail == "1 of 1 GPUs of project default in use"
    limit(fresh_client, tenant, f"{org_url}/projects/default/quota")
    limit(fresh_client, tenant, f"{org_url}/quota", max_running_runs=2)
    detail = queue(fresh_client, tenant, second_gpu)["detail"]
    assert detail == f"2 of 2 running runs of org {org_name(fresh_client, tenant)}"


def limit(client: TestClient, tenant: Tenant, url: str, **limits: int) -> None:
    assert client.put(url, json=limits, headers=tenant.headers).status_code == 200


def test_a_run_no_cluster_could_ever_hold_fails_as_unschedulable(fresh_client: TestClient) -> None:
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=4)
    run_id = submit(fresh_client, tenant, **gpus(8))
    run = fresh_client.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()
    assert (run["status"], run["status_reason"]) == ("failed", "unschedulable")
    assert run["status_message"] == (
        "needs 1 x 8 a100 on one cluster; the best fit any cluster has is 1 x 4"
    )


def test_a_pending_run_says_it_awaits_the_scheduler_and_a_fitting_one_is_ready(
    fresh_client: TestClient,
) -> None:
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=1)
    created = create_run(fresh_client, tenant, **gpus(1))
    assert created["queue"]["reason"] == "submitted"
    assert created["queue"]["position"] is None
    run_id = submit(fresh_client, tenant, **gpus(1))
    assert queue(fresh_client, tenant, run_id)["reason"] == "ready"


def test_a_queue_answer_follows_every_change_at_once(fresh_client: TestClient) -> None:
    """The plan explain keeps between reads is dropped as soon as a run, cluster or quota
    changes (core/scheduling/explain.py), so no read shows a position a change has moved."""
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=4)
    first, second = submit(fresh_client, tenant, **gpus(4)), submit(fresh_client, tenant, **gpus(2))
    assert queue(fresh_client, tenant, second) == {
        "position": 2,
        "reason": "no_capacity",
        "detail": "needs 1 x 2 a100 on one cluster, best fit nothing free",
        "eta": None,
    }
    cluster(factory, a100=6)
    assert queue(fresh_client, tenant, second)["reason"] == "ready"  # a cluster changed
    fresh_client.post(f"/v1/runs/{first}/cancel", headers=tenant.headers).raise_for_status()
    assert queue(fresh_client, tenant, second)["position"] == 1  # a run changed
    fresh_client.put(
        f"/v1/orgs/{tenant.org_id}/quota", json={"max_gpus": 1}, headers=tenant.headers
    ).raise_for_status()
    assert queue(fresh_client, tenant, second)["reason"] == "quota_exhausted"  # a quota changed

"""The lifecycle through the API: cancel, delete and the events that record every step."""

from __future__ import annotations

from fastapi.testclient import TestClient

from core.runs.states import RunStatus
from tests.api.expect import advance, assert_problem, finish
from tests.factories import Tenant, create_run


def _cancel(client: TestClient, tenant: Tenant, run_id: str) -> dict[str, object]:
    response = client.post(f"/v1/runs/{run_id}/cancel", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_cancelling_a_pending_run_cancels_it_at_once(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    cancelled = _cancel(client, tenant, run["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["status_reason"] == "user_cancelled"
    assert cancelled["finished_at"] is not None


def test_cancelling_twice_changes_nothing_the_second_time(
    client: TestClient, tenant: Tenant
) -> None:
    run = create_run(client, tenant)
    first = _cancel(client, tenant, run["id"])
    second = _cancel(client, tenant, run["id"])
    assert second == first


def test_cancelling_a_running_run_asks_it_to_stop(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    advance(client, run["id"], RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING)
    assert _cancel(client, tenant, run["id"])["status"] == "stopping"
    assert _cancel(client, tenant, run["id"])["status"] == "stopping"


def test_cancelling_a_succeeded_run_is_409(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    finish(client, run["id"])
    response = client.post(f"/v1/runs/{run['id']}/cancel", headers=tenant.headers)
    assert_problem(response, 409, "run_finished")


def test_deleting_an_active_run_is_409(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    assert_problem(client.delete(f"/v1/runs/{run['id']}", headers=tenant.headers), 409)
    assert client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).status_code == 200


def test_deleting_a_finished_run_is_204_then_404(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    _cancel(client, tenant, run["id"])
    assert client.delete(f"/v1/runs/{run['id']}", headers=tenant.headers).status_code == 204
    assert_problem(client.get(f"/v1/runs/{run['id']}", headers=tenant.headers), 404, "not_found")
    assert_problem(client.delete(f"/v1/runs/{run['id']}", headers=tenant.headers), 404)
    listed = client.get("/v1/runs", headers=tenant.headers).json()["data"]
    assert run["id"] not in {r["id"] for r in listed}


def test_events_page_oldest_first_with_cursors(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    for priority in ["high", "low", "high"]:
        client.patch(f"/v1/runs/{run['id']}", json={"priority": priority}, headers=tenant.headers)
    advance(client, run["id"], RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING)
    _cancel(client, tenant, run["id"])
    events, url = [], f"/v1/runs/{run['id']}/events?limit=2"
    while url:
        page = client.get(url, headers=tenant.headers).json()
        assert len(page["data"]) <= 2
        events += page["data"]
        cursor = page["next_cursor"]
        url = f"/v1/runs/{run['id']}/events?limit=2&after={cursor}" if page["has_more"] else ""
    kinds = [e["kind"] for e in events]
    assert kinds == [
        "created",
        "updated",
        "updated",
        "updated",
        "status",
        "status",
        "status",
        "status",
    ]
    assert [e["to_status"] for e in events[-4:]] == ["queued", "starting", "running", "stopping"]
    versions = [e["resource_version"] for e in events]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert (
        events[-1]["resource_version"]
        == client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).json()["resource_version"]
    )

"""Conditional requests: ETags on runs and lists, 304 for the unchanged, 412 for lost updates."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.expect import assert_problem, finish
from tests.factories import Tenant, create_run


def test_a_run_answers_304_to_its_own_etag(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    first = client.get(f"/v1/runs/{run['id']}", headers=tenant.headers)
    etag = first.headers["ETag"]
    again = client.get(f"/v1/runs/{run['id']}", headers={**tenant.headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["ETag"] == etag
    assert again.content == b""


def test_a_changed_run_has_a_new_etag_and_answers_200(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    etag = client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).headers["ETag"]
    client.patch(f"/v1/runs/{run['id']}", json={"priority": "high"}, headers=tenant.headers)
    again = client.get(f"/v1/runs/{run['id']}", headers={**tenant.headers, "If-None-Match": etag})
    assert again.status_code == 200
    assert again.headers["ETag"] != etag
    assert again.json()["priority"] == "high"


def test_a_list_answers_304_until_a_run_changes(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    etag = client.get("/v1/runs", headers=tenant.headers).headers["ETag"]
    unchanged = client.get("/v1/runs", headers={**tenant.headers, "If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.headers["ETag"] == etag
    client.post(f"/v1/runs/{run['id']}/cancel", headers=tenant.headers)
    changed = client.get("/v1/runs", headers={**tenant.headers, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert changed.json()["data"][0]["status"] == "cancelled"


def test_different_list_queries_have_different_etags(client: TestClient, tenant: Tenant) -> None:
    create_run(client, tenant)
    everything = client.get("/v1/runs", headers=tenant.headers).headers["ETag"]
    pending = client.get("/v1/runs?status=pending", headers=tenant.headers).headers["ETag"]
    assert everything != pending
    crossed = client.get(
        "/v1/runs?status=cancelled", headers={**tenant.headers, "If-None-Match": everything}
    )
    assert crossed.status_code == 200


def test_another_orgs_change_does_not_change_my_list_etag(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    create_run(client, tenant)
    etag = client.get("/v1/runs", headers=tenant.headers).headers["ETag"]
    create_run(client, other_tenant)
    again = client.get("/v1/runs", headers={**tenant.headers, "If-None-Match": etag})
    assert again.status_code == 304


def test_a_patch_with_a_stale_if_match_is_412(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    stale = client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).headers["ETag"]
    client.patch(f"/v1/runs/{run['id']}", json={"priority": "low"}, headers=tenant.headers)
    headers = {**tenant.headers, "If-Match": stale}
    response = client.patch(f"/v1/runs/{run['id']}", json={"priority": "high"}, headers=headers)
    assert_problem(response, 412, "precondition_failed")
    assert client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).json()["priority"] == "low"


def test_a_patch_with_a_fresh_if_match_is_applied(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    fresh = client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).headers["ETag"]
    headers = {**tenant.headers, "If-Match": fresh}
    body = {"priority": "high", "max_duration": "2h", "labels": {"team": "vision"}}
    response = client.patch(f"/v1/runs/{run['id']}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    patched = response.json()
    assert (patched["priority"], patched["labels"]) == ("high", {"team": "vision"})
    assert patched["spec"]["scheduling"]["max_duration"] == 7200
    assert response.headers["ETag"] != fresh


def test_a_patch_on_a_finished_run_is_409(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    finish(client, run["id"])
    response = client.patch(
        f"/v1/runs/{run['id']}", json={"priority": "high"}, headers=tenant.headers
    )
    assert_problem(response, 409, "run_finished")

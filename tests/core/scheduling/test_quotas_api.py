"""`/v1/orgs/{org_id}/quota`: admins set limits, every key of the org reads them, no one else."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories import Tenant, make_key


def quota_url(org_id: str) -> str:
    return f"/v1/orgs/{org_id}/quota"


def test_an_admin_sets_the_org_quota_and_a_viewer_reads_it(
    client: TestClient, tenant: Tenant
) -> None:
    response = client.put(
        quota_url(tenant.org_id),
        json={"max_gpus": 16, "max_running_runs": 4},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    viewer = make_key(client, tenant, "viewer")
    seen = client.get(quota_url(tenant.org_id), headers=viewer.headers).json()
    assert (seen["max_gpus"], seen["max_running_runs"]) == (16, 4)
    assert seen["usage"] == {"gpus": 0, "running_runs": 0}
    assert seen["project_id"] is None
    assert seen["projects"] == []


def test_a_quota_left_out_is_unlimited(client: TestClient, tenant: Tenant) -> None:
    client.put(quota_url(tenant.org_id), json={"max_gpus": 2}, headers=tenant.headers)
    response = client.put(quota_url(tenant.org_id), json={}, headers=tenant.headers)
    assert (response.json()["max_gpus"], response.json()["max_running_runs"]) == (None, None)
    fresh = client.get(quota_url(tenant.org_id), headers=tenant.headers).json()
    assert fresh["max_gpus"] is None
    assert fresh["updated_at"] is not None


def test_only_admins_set_quotas(client: TestClient, tenant: Tenant) -> None:
    member = make_key(client, tenant, "member")
    response = client.put(quota_url(tenant.org_id), json={"max_gpus": 1}, headers=member.headers)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_another_orgs_quota_is_not_found_for_reading_or_writing(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    client.put(quota_url(other_tenant.org_id), json={"max_gpus": 8}, headers=other_tenant.headers)
    read = client.get(quota_url(other_tenant.org_id), headers=tenant.headers)
    write = client.put(quota_url(other_tenant.org_id), json={"max_gpus": 0}, headers=tenant.headers)
    assert (read.status_code, write.status_code) == (404, 404)
    assert read.json()["detail"] == f"Organisation {other_tenant.org_id} was not found."
    mine = client.get(quota_url(other_tenant.org_id), headers=other_tenant.headers).json()
    assert mine["max_gpus"] == 8  # untouched


def test_a_project_quota_is_listed_under_the_org(client: TestClient, tenant: Tenant) -> None:
    response = client.put(
        f"{quota_url(tenant.org_id)[:-6]}/projects/default/quota",
        json={"max_gpus": 2},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["project_id"] == tenant.project_id
    seen = client.get(quota_url(tenant.org_id), headers=tenant.headers).json()
    assert [(p["project_id"], p["max_gpus"]) for p in seen["projects"]] == [(tenant.project_id, 2)]
    assert seen["max_gpus"] is None


def test_bad_limits_are_refused(client: TestClient, tenant: Tenant) -> None:
    for body in ({"max_gpus": -1}, {"max_gpus": "many"}, {"max_cpus": 3}):
        response = client.put(quota_url(tenant.org_id), json=body, headers=tenant.headers)
        assert response.status_code == 422, body
    unknown = client.put(
        f"/v1/orgs/{tenant.org_id}/projects/nope/quota", json={}, headers=tenant.headers
    )
    assert unknown.status_code == 404

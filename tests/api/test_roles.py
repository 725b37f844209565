"""Roles and project scope: viewers read, members submit, admins manage keys and projects."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.expect import assert_problem
from tests.api.routes import ROUTES, WRITE_ROUTES, fill
from tests.factories import PUBLIC_HOOK, Tenant, create_run, make_key, run_spec

# A valid body for every write, so that the role alone decides the answer.
WRITE_BODIES: dict[tuple[str, str], dict[str, Any] | None] = {
    ("POST", "/v1/runs"): run_spec(),
    ("PATCH", "/v1/runs/{run_id}"): {"priority": "high"},
    ("POST", "/v1/runs/{run_id}/cancel"): None,
    ("DELETE", "/v1/runs/{run_id}"): None,
    ("POST", "/v1/projects"): {"name": "research"},
    ("POST", "/v1/api-keys"): {"name": "ci", "role": "viewer"},
    ("DELETE", "/v1/api-keys/{key_id}"): None,
    ("PUT", "/v1/orgs/{org_id}/quota"): {"max_gpus": 8},
    ("PUT", "/v1/orgs/{org_id}/projects/{project}/quota"): {"max_gpus": 8},
    ("POST", "/v1/runs/{run_id}/metrics"): {"points": []},
    ("POST", "/v1/runs/{run_id}/heartbeat"): {},
    ("POST", "/v1/runs/{run_id}/checkpoints"): {"step": 1, "path": "step-0000000001/", "files": []},
    ("POST", "/v1/runs/{run_id}/storage/presign"): {
        "operations": [{"method": "GET", "key": "checkpoints/step-0000000001/COMMIT"}]
    },
    ("POST", "/v1/runs/{run_id}/storage/multipart"): {"key": "checkpoints/step-0000000001/w"},
    ("POST", "/v1/runs/{run_id}/storage/multipart/complete"): {
        "key": "checkpoints/step-0000000001/w",
        "upload_id": "x",
    },
    ("POST", "/v1/datasets"): {"name": "corpus"},
    ("POST", "/v1/datasets/{dataset}/versions"): {"source": "s3://bucket/prefix/"},
    ("POST", "/v1/datasets/{dataset}/uploads"): {"files": [{"path": "a.txt", "size": 1}]},
    ("POST", "/v1/datasets/{dataset}/uploads/{upload_id}/complete"): None,
    ("POST", "/v1/provenance/verify"): {"record": {}, "signature": "00"},
    ("POST", "/v1/secrets"): {"name": "wandb", "value": "not-for-members"},
    ("PUT", "/v1/secrets/{secret_name}"): {"value": "not-for-members"},
    ("DELETE", "/v1/secrets/{secret_name}"): None,
    ("PUT", "/v1/code/{digest}"): None,
    ("POST", "/v1/webhooks"): {"url": PUBLIC_HOOK},
    ("PATCH", "/v1/webhooks/{webhook_id}"): {"description": "not for members"},
    ("DELETE", "/v1/webhooks/{webhook_id}"): None,
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"): None,
    ("POST", "/v1/webhooks/{webhook_id}/ping"): None,
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): None,
    ("POST", "/v1/runs/plan"): run_spec(),
    ("POST", "/v1/runs/{run_id}/clone"): {},
    ("PUT", "/v1/orgs/{org_id}/budget"): {"amount": 100},
    ("PUT", "/v1/orgs/{org_id}/projects/{project}/budget"): {"amount": 100},
    ("DELETE", "/v1/orgs/{org_id}/budget"): None,
    ("DELETE", "/v1/orgs/{org_id}/projects/{project}/budget"): None,
}
# POSTs that only read: a viewer may call them.
VIEWER_POSTS = {("POST", "/v1/provenance/verify")}
VIEWER_FORBIDDEN = [route for route in WRITE_ROUTES if route not in VIEWER_POSTS]
ADMIN_ROUTES = [
    ("POST", "/v1/api-keys"),
    ("GET", "/v1/api-keys"),
    ("DELETE", "/v1/api-keys/{key_id}"),
    ("POST", "/v1/projects"),
    ("PUT", "/v1/orgs/{org_id}/quota"),
    ("PUT", "/v1/orgs/{org_id}/projects/{project}/quota"),
    ("POST", "/v1/secrets"),
    ("PUT", "/v1/secrets/{secret_name}"),
    ("DELETE", "/v1/secrets/{secret_name}"),
    *[(method, path) for method, path in ROUTES if path.startswith("/v1/webhooks")],
    ("GET", "/v1/orgs/{org_id}/usage"),
    ("GET", "/v1/orgs/{org_id}/budgets"),
    ("GET", "/v1/orgs/{org_id}/budget-alerts"),
    ("GET", "/v1/orgs/{org_id}/budget"),
    ("PUT", "/v1/orgs/{org_id}/budget"),
    ("DELETE", "/v1/orgs/{org_id}/budget"),
    ("GET", "/v1/orgs/{org_id}/projects/{project}/budget"),
    ("PUT", "/v1/orgs/{org_id}/projects/{project}/budget"),
    ("DELETE", "/v1/orgs/{org_id}/projects/{project}/budget"),
]


def _ids(client: TestClient, admin: Tenant) -> dict[str, str]:
    run = create_run(client, admin)
    other = client.post("/v1/api-keys", json={"name": "other"}, headers=admin.headers).json()
    return {
        "run_id": run["id"],
        "key_id": other["id"],
        "project_id": admin.project_id,
        "project": admin.project_id,
        "org_id": admin.org_id,
        "dataset": "corpus",
        "upload_id": "upl_01jd5x",
        "secret_name": "wandb",
        "digest": "sha256:" + "ab" * 32,
        "webhook_id": "whe_01jd5x",  # the role is refused before the endpoint is looked up
        "delivery_id": "msg_01jd5x",
    }


def test_every_write_route_has_a_body_here() -> None:
    assert set(WRITE_ROUTES) <= WRITE_BODIES.keys(), set(WRITE_ROUTES) - WRITE_BODIES.keys()


@pytest.mark.parametrize(
    ("method", "path"), VIEWER_FORBIDDEN, ids=[f"{m} {p}" for m, p in VIEWER_FORBIDDEN]
)
def test_a_viewer_gets_403_on_every_write(
    client: TestClient, tenant: Tenant, method: str, path: str
) -> None:
    viewer = make_key(client, tenant, "viewer")
    url = fill(path, _ids(client, tenant))
    response = client.request(
        method, url, json=WRITE_BODIES.get((method, path)), headers=viewer.headers
    )
    assert_problem(response, 403, "forbidden")


def test_a_viewer_can_read_runs(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    viewer = make_key(client, tenant, "viewer")
    assert client.get(f"/v1/runs/{run['id']}", headers=viewer.headers).status_code == 200
    assert client.get("/v1/runs", headers=viewer.headers).json()["data"][0]["id"] == run["id"]


@pytest.mark.parametrize(
    ("method", "path"), ADMIN_ROUTES, ids=[f"{m} {p}" for m, p in ADMIN_ROUTES]
)
def test_a_member_gets_403_on_admin_routes(
    client: TestClient, tenant: Tenant, method: str, path: str
) -> None:
    member = make_key(client, tenant, "member")
    url = fill(path, _ids(client, tenant))
    response = client.request(
        method, url, json=WRITE_BODIES.get((method, path)), headers=member.headers
    )
    assert_problem(response, 403, "forbidden")


def test_a_member_submits_cancels_and_lists_projects(client: TestClient, tenant: Tenant) -> None:
    member = make_key(client, tenant, "member")
    run = create_run(client, member)
    cancelled = client.post(f"/v1/runs/{run['id']}/cancel", headers=member.headers)
    assert cancelled.json()["status"] == "cancelled"
    assert client.get("/v1/projects", headers=member.headers).status_code == 200


@pytest.fixture
def scoped(client: TestClient, tenant: Tenant) -> Tenant:
    """A member key limited to a second project, `lab`."""
    lab = client.post("/v1/projects", json={"name": "lab"}, headers=tenant.headers).json()
    key = make_key(client, tenant, "member", project="lab")
    return Tenant(tenant.org_id, lab["id"], key.key)


def test_a_project_scoped_key_cannot_see_another_projects_run(
    client: TestClient, tenant: Tenant, scoped: Tenant
) -> None:
    elsewhere = create_run(client, tenant)
    assert_problem(client.get(f"/v1/runs/{elsewhere['id']}", headers=scoped.headers), 404)
    assert_problem(client.post(f"/v1/runs/{elsewhere['id']}/cancel", headers=scoped.headers), 404)
    listed = client.get("/v1/runs", headers=scoped.headers).json()["data"]
    feed = client.get("/v1/runs?changed_since=0", headers=scoped.headers).json()["data"]
    assert elsewhere["id"] not in {r["id"] for r in listed + feed}


def test_a_project_scoped_key_cannot_create_runs_in_another_project(
    client: TestClient, scoped: Tenant
) -> None:
    response = client.post("/v1/runs", json=run_spec(project="default"), headers=scoped.headers)
    assert_problem(response, 403, "forbidden")


def test_a_project_scoped_key_submits_into_its_project(client: TestClient, scoped: Tenant) -> None:
    run = create_run(client, scoped)
    assert run["project_id"] == scoped.project_id
    listed = client.get("/v1/runs", headers=scoped.headers).json()["data"]
    assert [r["id"] for r in listed] == [run["id"]]


def test_a_project_scoped_key_sees_only_its_project(client: TestClient, scoped: Tenant) -> None:
    projects = client.get("/v1/projects", headers=scoped.headers).json()
    assert [p["id"] for p in projects] == [scoped.project_id]
    filtered = client.get("/v1/runs?project=default", headers=scoped.headers)
    assert_problem(filtered, 403, "forbidden")

"""Secrets per org through the API: write-only, encrypted at rest, scoped to one org (issue 12).

An admin creates, rotates and deletes secret values for the org or one of its projects; every
key of the org may list names and versions; no route ever returns a value, and the database
holds only ciphertext bound to its org, project and name.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app_state import app_sessionmaker
from core.db import session_scope
from tests.api.expect import assert_problem
from tests.api.routes import ROUTES
from tests.factories import Tenant, app_of, make_key
from tests.support.secrets import canary, set_secret


def test_an_admin_creates_a_secret_and_sees_only_its_metadata(
    client: TestClient, tenant: Tenant
) -> None:
    value = canary()
    made = set_secret(client, tenant, "wandb", value)
    assert made["name"] == "wandb"
    assert made["project_id"] is None
    assert made["version"] == 1
    assert {"created_at", "updated_at"} <= made.keys()
    assert "value" not in made
    listed = client.get("/v1/secrets", headers=tenant.headers)
    assert [s["name"] for s in listed.json()] == ["wandb"]
    one = client.get("/v1/secrets/wandb", headers=tenant.headers)
    assert one.json()["version"] == 1
    for response in (listed, one):
        assert value not in response.text


def test_rotating_a_secret_bumps_its_version_and_returns_no_value(
    client: TestClient, tenant: Tenant
) -> None:
    set_secret(client, tenant, "hf-token", canary())
    newer = canary()
    rotated = client.put("/v1/secrets/hf-token", json={"value": newer}, headers=tenant.headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["version"] == 2
    assert newer not in rotated.text


def test_a_deleted_secret_is_gone(client: TestClient, tenant: Tenant) -> None:
    set_secret(client, tenant, "gone", canary())
    deleted = client.delete("/v1/secrets/gone", headers=tenant.headers)
    assert deleted.status_code == 204
    assert_problem(client.get("/v1/secrets/gone", headers=tenant.headers), 404, "not_found")
    assert client.get("/v1/secrets", headers=tenant.headers).json() == []


def test_creating_a_secret_twice_is_a_conflict(client: TestClient, tenant: Tenant) -> None:
    set_secret(client, tenant, "twice", canary())
    again = client.post("/v1/secrets", json={"name": "twice", "value": "x"}, headers=tenant.headers)
    assert_problem(again, 409, "already_exists")


def test_a_project_secret_lives_beside_the_org_wide_one(client: TestClient, tenant: Tenant) -> None:
    client.post("/v1/projects", json={"name": "lab"}, headers=tenant.headers)
    set_secret(client, tenant, "wandb", canary())
    scoped = set_secret(client, tenant, "wandb", canary(), project="lab")
    assert scoped["project_id"] not in {None, tenant.project_id}
    listed = client.get("/v1/secrets", headers=tenant.headers).json()
    assert sorted((s["name"], s["project_id"] is None) for s in listed) == [
        ("wandb", False),
        ("wandb", True),
    ]
    only_lab = client.get("/v1/secrets/wandb", params={"project": "lab"}, headers=tenant.headers)
    assert only_lab.json()["project_id"] == scoped["project_id"]
    client.delete("/v1/secrets/wandb", params={"project": "lab"}, headers=tenant.headers)
    assert client.get("/v1/secrets/wandb", headers=tenant.headers).status_code == 200


def test_another_orgs_secret_is_invisible_and_untouchable(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    set_secret(client, tenant, "wandb", canary())
    assert client.get("/v1/secrets", headers=other_tenant.headers).json() == []
    for method in ("GET", "PUT", "DELETE"):
        body = {"value": "overwritten"} if method == "PUT" else None
        response = client.request(
            method, "/v1/secrets/wandb", json=body, headers=other_tenant.headers
        )
        assert_problem(response, 404, "not_found")
    assert client.get("/v1/secrets/wandb", headers=tenant.headers).json()["version"] == 1


def test_members_and_viewers_cannot_write_secrets_but_can_list_names(
    client: TestClient, tenant: Tenant
) -> None:
    set_secret(client, tenant, "wandb", canary())
    for role in ("member", "viewer"):
        key = make_key(client, tenant, role)
        created = client.post("/v1/secrets", json={"name": "x", "value": "y"}, headers=key.headers)
        assert_problem(created, 403, "forbidden")
        rotated = client.put("/v1/secrets/wandb", json={"value": "y"}, headers=key.headers)
        assert_problem(rotated, 403, "forbidden")
        assert_problem(client.delete("/v1/secrets/wandb", headers=key.headers), 403, "forbidden")
        assert [s["name"] for s in client.get("/v1/secrets", headers=key.headers).json()] == [
            "wandb"
        ]


def test_a_project_scoped_admin_cannot_write_org_wide_secrets(
    client: TestClient, tenant: Tenant
) -> None:
    client.post("/v1/projects", json={"name": "lab"}, headers=tenant.headers)
    lab_admin = make_key(client, tenant, "admin", project="lab")
    org_wide = client.post(
        "/v1/secrets", json={"name": "x", "value": "y"}, headers=lab_admin.headers
    )
    assert_problem(org_wide, 403, "forbidden")
    own = client.post(
        "/v1/secrets", json={"name": "x", "value": "y", "project": "lab"}, headers=lab_admin.headers
    )
    assert own.status_code == 201, own.text
    other = client.post(
        "/v1/secrets",
        json={"name": "x", "value": "y", "project": "default"},
        headers=lab_admin.headers,
    )
    assert_problem(other, 403, "forbidden")


def test_secret_values_are_validated_without_echoing_them(
    client: TestClient, tenant: Tenant
) -> None:
    value = canary() + "\x00"
    response = client.post(
        "/v1/secrets", json={"name": "bad", "value": value}, headers=tenant.headers
    )
    body = assert_problem(response, 422, "validation_error")
    assert value[:20] not in response.text
    assert "/value" in {e.get("pointer") for e in body["errors"]}
    bad_name = client.post(
        "/v1/secrets", json={"name": "no spaces", "value": "v"}, headers=tenant.headers
    )
    assert_problem(bad_name, 422, "validation_error")


def test_the_database_holds_ciphertext_only(client: TestClient, tenant: Tenant) -> None:
    value = canary()
    set_secret(client, tenant, "at-rest", value)
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as session:
        rows = session.execute(
            text("SELECT * FROM run_secrets WHERE org_id = :org"), {"org": tenant.org_id}
        ).all()
    assert rows, "the secret is stored"
    assert all(value not in str(cell) for row in rows for cell in row)


def test_the_openapi_document_marks_values_write_only_and_returns_none(client: TestClient) -> None:
    secret_routes = [(m, p) for m, p in ROUTES if p.startswith("/v1/secrets")]
    assert {m for m, _ in secret_routes} == {"GET", "POST", "PUT", "DELETE"}
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["SecretCreate"]["properties"]["value"]["writeOnly"] is True
    assert schemas["SecretUpdate"]["properties"]["value"]["writeOnly"] is True
    assert "value" not in schemas["SecretOut"]["properties"]

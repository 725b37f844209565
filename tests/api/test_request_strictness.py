"""What a request may carry, stated once and applied to every route (issue 15, "API").

- a query parameter the route does not take is a 422 naming it, never silently ignored;
- an integer field refuses booleans (`false` is not 0);
- a body in a media type the route does not read is a 415, not a 422;
- `If-Match: *` matches any current representation (RFC 9110 13.1.1);
- `OPTIONS` answers `Allow` with every method of the path, and a 405 lists them all too.

The route-wide cases derive from the app's own routes and its OpenAPI document, so they grow
with the API.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.expect import assert_problem
from tests.api.routes import ROUTES, SCHEMA_ROUTES, fill
from tests.factories import Tenant, create_run, run_spec

IDS = {
    "run_id": "run_0",
    "org_id": "org_0",
    "project": "p",
    "project_id": "prj_0",
    "key_id": "key_0",
    "dataset": "d",
    "version": "1",
    "file_path": "f",
    "step": "1",
    "upload_id": "upl_0",
    "secret_name": "s",
    "digest": "sha256:" + "0" * 64,
    "attempt": "1",
    "webhook_id": "whe_0",
    "delivery_id": "msg_" + "0" * 32,
}
V1_ROUTES = [(m, p) for m, p in ROUTES if p.startswith("/v1")]


# The pages (/, /docs, /redoc) are left out: a browser's URL may carry anything (?utm_source=).
@pytest.mark.parametrize(("method", "path"), SCHEMA_ROUTES)
def test_an_unknown_query_parameter_is_refused_on_every_route(
    client: TestClient, tenant: Tenant, method: str, path: str
) -> None:
    response = client.request(
        method, fill(path, IDS) + "?dry_run=true", headers=tenant.headers, json={}
    )
    if method == "HEAD":  # a HEAD answer has no body to carry the problem
        assert response.status_code == 422
        return
    assert_problem(response, 422, "validation_error")
    assert response.json()["errors"] == [
        {"parameter": "dry_run", "message": response.json()["errors"][0]["message"]}
    ]
    assert "dry_run" in response.json()["detail"]


def test_post_runs_with_dry_run_creates_nothing(client: TestClient, tenant: Tenant) -> None:
    response = client.post("/v1/runs?dry_run=true", json=run_spec(), headers=tenant.headers)
    assert_problem(response, 422, "validation_error")
    assert client.get("/v1/runs", headers=tenant.headers).json()["data"] == []


def test_known_query_parameters_still_work(client: TestClient, tenant: Tenant) -> None:
    create_run(client, tenant, labels={"team": "nlp"})
    response = client.get(
        "/v1/runs?limit=5&labels=team%3Dnlp&status=pending", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 1


def test_an_unknown_query_parameter_without_a_key_is_still_a_401(client: TestClient) -> None:
    assert client.post("/v1/runs?dry_run=true", json=run_spec()).status_code == 401


def _integer_fields(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(method, path, property) of every top-level integer property of a JSON request body."""
    schemas = document["components"]["schemas"]
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref")
            if ref is None:
                continue
            model = schemas[ref.rsplit("/", 1)[1]]
            for name, prop in model.get("properties", {}).items():
                types = [prop, *prop.get("anyOf", [])]
                if any(t.get("type") == "integer" for t in types):
                    found.append((method.upper(), path, name))
    return found


def test_every_integer_body_field_refuses_booleans(client: TestClient, tenant: Tenant) -> None:
    fields = _integer_fields(client.get("/openapi.json").json())
    assert ("PUT", "/v1/orgs/{org_id}/quota", "max_running_runs") in fields
    assert ("POST", "/v1/runs/{run_id}/heartbeat", "resumed_from_step") in fields
    ids = {**IDS, "org_id": tenant.org_id, "run_id": create_run(client, tenant)["id"]}
    for method, path, name in fields:
        response = client.request(
            method, fill(path, ids), json={name: False}, headers=tenant.headers
        )
        assert response.status_code == 422, (method, path, name, response.text)
        assert f"/{name}" in [e.get("pointer") for e in response.json()["errors"]], (path, name)


def test_a_boolean_quota_stores_nothing(client: TestClient, tenant: Tenant) -> None:
    path = f"/v1/orgs/{tenant.org_id}/quota"
    response = client.put(path, json={"max_running_runs": False}, headers=tenant.headers)
    assert_problem(response, 422, "validation_error")
    assert client.get(path, headers=tenant.headers).json()["max_running_runs"] is None


def test_a_boolean_resumed_from_step_is_refused(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    response = client.post(
        f"/v1/runs/{run['id']}/heartbeat",
        json={"step": 1, "resumed_from_step": False},
        headers=tenant.headers,
    )
    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize("media", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_the_route_cannot_read_is_a_415(
    client: TestClient, tenant: Tenant, media: str | None
) -> None:
    headers = {**tenant.headers, **({"Content-Type": media} if media else {})}
    response = client.post("/v1/runs", content=b'{"image": "x", "command": ["y"]}', headers=headers)
    assert_problem(response, 415, "unsupported_media_type")
    assert "application/json" in response.json()["detail"]
    assert client.get("/v1/runs", headers=tenant.headers).json()["data"] == []


def test_json_yaml_and_json_suffix_media_types_are_read(client: TestClient, tenant: Tenant) -> None:
    body = b'{"image": "x", "command": ["y"]}'
    for media in ["application/json", "application/json; charset=utf-8", "application/yaml"]:
        headers = {**tenant.headers, "Content-Type": media}
        assert client.post("/v1/runs", content=body, headers=headers).status_code == 201, media


def test_if_match_star_matches_any_current_run(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    headers = {**tenant.headers, "If-Match": "*"}
    response = client.patch(f"/v1/runs/{run['id']}", json={"priority": "high"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["priority"] == "high"
    missing = client.patch("/v1/runs/run_nope", json={"priority": "high"}, headers=headers)
    assert_problem(missing, 404, "not_found")


def _documented_methods(document: dict[str, Any], path: str) -> set[str]:
    return {m.upper() for m in document["paths"][path.replace(":path}", "}")]}


@pytest.mark.parametrize("path", sorted({p for _, p in V1_ROUTES}))
def test_options_lists_every_method_of_the_path(
    client: TestClient, tenant: Tenant, path: str
) -> None:
    document = client.get("/openapi.json").json()
    response = client.options(fill(path, IDS), headers=tenant.headers)
    assert response.status_code == 204, response.text
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed == _documented_methods(document, path) | {"OPTIONS"}


def test_a_405_lists_every_method_of_the_path(client: TestClient, tenant: Tenant) -> None:
    response = client.put("/v1/api-keys", headers=tenant.headers)
    assert_problem(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["Allow"].split(",")} == {"GET", "POST", "OPTIONS"}

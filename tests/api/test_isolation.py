"""Tenant isolation: another organisation's objects are exactly as missing as nonexistent ones.

The routes come from the app itself, so a route added later is covered (or fails the coverage
test) without anyone remembering to add it here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from core.ids import new_id
from tests.api.expect import assert_problem
from tests.api.routes import PATH_PARAM, ROUTES, fill
from tests.factories import PUBLIC_HOOK, Tenant, create_run, make_tenant

# An upload names its content, not an object: every org may PUT any digest (tested below).
UPLOADS = {("PUT", "/v1/code/{digest}")}
ID_ROUTES = [
    (method, path) for method, path in ROUTES if "{" in path and (method, path) not in UPLOADS
]
LIST_ROUTES = [p for m, p in ROUTES if m == "GET" and "{" not in p and p.startswith("/v1")]
# The smallest valid body per write route, so that only ownership decides the answer.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/v1/runs/{run_id}"): {"priority": "high"},
    ("PUT", "/v1/orgs/{org_id}/quota"): {"max_gpus": 1},
    ("PUT", "/v1/orgs/{org_id}/projects/{project}/quota"): {"max_gpus": 1},
    ("PUT", "/v1/orgs/{org_id}/budget"): {"amount": 1},
    ("PUT", "/v1/orgs/{org_id}/projects/{project}/budget"): {"amount": 1},
    ("POST", "/v1/runs/{run_id}/clone"): {},
    ("POST", "/v1/runs/{run_id}/metrics"): {"points": []},
    ("POST", "/v1/runs/{run_id}/heartbeat"): {},
    ("POST", "/v1/runs/{run_id}/storage/presign"): {
        "operations": [{"method": "GET", "key": "checkpoints/step-0000000001/COMMIT"}]
    },
    ("POST", "/v1/runs/{run_id}/storage/multipart"): {"key": "checkpoints/step-0000000001/w"},
    ("POST", "/v1/runs/{run_id}/storage/multipart/complete"): {
        "key": "checkpoints/step-0000000001/w",
        "upload_id": "x",
    },
    ("POST", "/v1/runs/{run_id}/checkpoints"): {
        "step": 1,
        "path": "step-0000000001/",
        "files": [],
    },
    ("POST", "/v1/datasets/{dataset}/versions"): {"source": "s3://bucket/prefix/"},
    ("POST", "/v1/datasets/{dataset}/uploads"): {"files": [{"path": "a.txt", "size": 1}]},
    ("PUT", "/v1/secrets/{secret_name}"): {"value": "an intruder's value"},
    ("PATCH", "/v1/webhooks/{webhook_id}"): {"description": "an intruder's"},
}
# How each kind of path id is filled: (the victim's object, an id that was never issued).
MISSING = {
    "run_id": new_id("run"),
    "project_id": new_id("prj"),
    "project": new_id("prj"),
    "key_id": new_id("key"),
    "org_id": new_id("org"),
    "dataset": "never-created-dataset",
    "version": "sha256:" + "ab" * 32,
    "step": "987654321",
    "upload_id": new_id("upl"),
    "secret_name": "never-created-secret",
    "digest": "sha256:" + "cd" * 32,
    "attempt": "1",
    "webhook_id": new_id("whe"),
    "delivery_id": "msg_" + "0" * 32,
}


@dataclass(frozen=True)
class Orgs:
    victim: Tenant
    intruder: Tenant
    ids: dict[str, str]  # path parameter name -> the victim's object id
    victim_run_version: int


@pytest.fixture(scope="module")
def orgs(client: TestClient) -> Orgs:
    victim, intruder = make_tenant(client), make_tenant(client)
    run = create_run(client, victim)
    create_run(client, intruder)
    dataset = client.post(
        "/v1/datasets", json={"name": f"victim-data-{run['id'][-6:]}"}, headers=victim.headers
    ).json()
    extra = client.post(
        "/v1/api-keys", json={"name": "ci", "role": "member"}, headers=victim.headers
    ).json()
    secret = client.post(
        "/v1/secrets",
        json={"name": f"victim-secret-{run['id'][-6:]}", "value": "victim's value"},
        headers=victim.headers,
    ).json()
    snapshot = b"the victim's code"
    digest = "sha256:" + hashlib.sha256(snapshot).hexdigest()
    client.put(f"/v1/code/{digest}", content=snapshot, headers=victim.headers)
    hook = client.post("/v1/webhooks", json={"url": PUBLIC_HOOK}, headers=victim.headers).json()
    ping = client.post(f"/v1/webhooks/{hook['id']}/ping", headers=victim.headers).json()
    ids = {
        "digest": digest,
        "attempt": "1",
        "run_id": run["id"],
        "project_id": victim.project_id,
        "project": victim.project_id,
        "key_id": extra["id"],
        "org_id": victim.org_id,
        "dataset": dataset["name"],
        "version": "sha256:" + "ab" * 32,
        "step": "987654321",
        "upload_id": new_id("upl"),  # uploads need S3 storage; the dataset decides first
        "secret_name": secret["name"],
        "webhook_id": hook["id"],
        "delivery_id": ping["id"],
    }
    return Orgs(victim, intruder, ids, run["resource_version"])


def _call(
    client: TestClient, method: str, path: str, ids: dict[str, str], who: Tenant
) -> httpx.Response:
    body = BODIES.get((method, path))
    response: httpx.Response = client.request(
        method, fill(path, ids), json=body, headers=who.headers
    )
    return response


def _shape(body: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """The body without what legitimately differs: the request id, the path and the ids."""
    rest = {k: v for k, v in body.items() if k not in {"request_id", "instance"}}
    detail = rest["detail"]
    for name, object_id in ids.items():
        if len(object_id) > 3:  # an attempt number ("1") is the same in both and no secret
            detail = detail.replace(object_id, f"<{name}>")
    return {**rest, "detail": detail}


def test_every_path_id_kind_has_an_id_provider() -> None:
    used = {name for _, path in ID_ROUTES for name in PATH_PARAM.findall(path)}
    assert used <= MISSING.keys(), f"add an id provider for {used - MISSING.keys()}"
    assert len(ID_ROUTES) >= 8  # the runs, projects and api-keys routes at least


@pytest.mark.parametrize(("method", "path"), ID_ROUTES, ids=[f"{m} {p}" for m, p in ID_ROUTES])
def test_another_orgs_object_answers_exactly_like_a_missing_one(
    client: TestClient, orgs: Orgs, method: str, path: str
) -> None:
    foreign = _call(client, method, path, orgs.ids, orgs.intruder)
    missing = _call(client, method, path, MISSING, orgs.intruder)
    if method == "HEAD":  # no body to compare
        assert foreign.status_code == missing.status_code == 404
        return
    foreign_body = assert_problem(foreign, 404, "not_found")
    missing_body = assert_problem(missing, 404, "not_found")
    assert _shape(foreign_body, orgs.ids) == _shape(missing_body, MISSING)


def test_foreign_calls_leave_the_victims_objects_untouched(client: TestClient, orgs: Orgs) -> None:
    for method, path in ID_ROUTES:
        _call(client, method, path, orgs.ids, orgs.intruder)
    run = client.get(f"/v1/runs/{orgs.ids['run_id']}", headers=orgs.victim.headers).json()
    assert run["resource_version"] == orgs.victim_run_version
    assert run["status"] == "pending"
    keys = client.get("/v1/api-keys", headers=orgs.victim.headers).json()
    assert all(k["revoked_at"] is None for k in keys)
    secret = client.get(f"/v1/secrets/{orgs.ids['secret_name']}", headers=orgs.victim.headers)
    assert secret.json()["version"] == 1


def test_a_foreign_digest_is_uploaded_like_any_unknown_one(client: TestClient, orgs: Orgs) -> None:
    """The intruder cannot learn that the victim has a snapshot, nor replace it."""
    foreign = client.put(
        f"/v1/code/{orgs.ids['digest']}", content=b"other bytes", headers=orgs.intruder.headers
    )
    missing = client.put(
        f"/v1/code/{MISSING['digest']}", content=b"other bytes", headers=orgs.intruder.headers
    )
    assert _shape(assert_problem(foreign, 422, "digest_mismatch"), orgs.ids) == _shape(
        assert_problem(missing, 422, "digest_mismatch"), MISSING
    )
    kept = client.get(f"/v1/code/{orgs.ids['digest']}", headers=orgs.victim.headers)
    assert kept.status_code == 200


@pytest.mark.parametrize("path", LIST_ROUTES)
def test_every_list_shows_no_foreign_rows(client: TestClient, orgs: Orgs, path: str) -> None:
    response = client.get(path, headers=orgs.intruder.headers)
    assert response.status_code == 200, response.text
    for foreign_id in [orgs.victim.org_id, *orgs.ids.values()]:
        if len(foreign_id) > 3:  # not the attempt number
            assert foreign_id not in response.text


def test_the_change_feed_shows_no_foreign_rows(client: TestClient, orgs: Orgs) -> None:
    feed = client.get("/v1/runs?changed_since=0&limit=200", headers=orgs.intruder.headers).json()
    assert feed["data"], "the intruder's own run is in its feed"
    assert orgs.ids["run_id"] not in {r["id"] for r in feed["data"]}


def test_a_foreign_project_cannot_be_named_when_submitting(client: TestClient, orgs: Orgs) -> None:
    response = client.post(
        "/v1/runs",
        json={"image": "busybox", "command": ["true"], "project": orgs.victim.project_id},
        headers=orgs.intruder.headers,
    )
    assert_problem(response, 404, "not_found")


def test_a_foreign_project_cannot_scope_a_new_key(client: TestClient, orgs: Orgs) -> None:
    response = client.post(
        "/v1/api-keys",
        json={"name": "sneaky", "project": orgs.victim.project_id},
        headers=orgs.intruder.headers,
    )
    assert_problem(response, 404, "not_found")


def test_a_foreign_project_filter_lists_nothing_of_theirs(client: TestClient, orgs: Orgs) -> None:
    response = client.get(
        f"/v1/runs?project={orgs.victim.project_id}", headers=orgs.intruder.headers
    )
    assert_problem(response, 404, "not_found")
    assert orgs.ids["run_id"] not in response.text

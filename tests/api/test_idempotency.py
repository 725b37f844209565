"""Idempotency keys: a retried submission returns the first run, never a second one."""

from __future__ import annotations

import threading

import httpx
from fastapi.testclient import TestClient

from tests.api.expect import assert_problem
from tests.factories import Tenant, make_tenant, run_spec
from tests.support.servers import LiveServer

CONCURRENT_POSTS = 8


def _post(client: TestClient, tenant: Tenant, key: str, **spec: object) -> httpx.Response:
    headers = {**tenant.headers, "Idempotency-Key": key}
    response: httpx.Response = client.post("/v1/runs", json=run_spec(**spec), headers=headers)
    return response


def _run_ids(client: TestClient, tenant: Tenant) -> list[str]:
    page = client.get("/v1/runs?limit=200", headers=tenant.headers).json()
    return [run["id"] for run in page["data"]]


def test_the_same_key_and_body_replays_the_original_run(client: TestClient, tenant: Tenant) -> None:
    first = _post(client, tenant, "job-1", name="exp")
    again = _post(client, tenant, "job-1", name="exp")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert _run_ids(client, tenant) == [first.json()["id"]]


def test_the_same_key_with_another_body_is_refused(client: TestClient, tenant: Tenant) -> None:
    first = _post(client, tenant, "job-2", name="exp")
    other = _post(client, tenant, "job-2", name="other")
    assert_problem(other, 422, "idempotency_key_reused")
    assert _run_ids(client, tenant) == [first.json()["id"]]


def test_the_same_body_without_a_key_makes_two_runs(client: TestClient, tenant: Tenant) -> None:
    client.post("/v1/runs", json=run_spec(name="twice"), headers=tenant.headers)
    client.post("/v1/runs", json=run_spec(name="twice"), headers=tenant.headers)
    assert len(_run_ids(client, tenant)) == 2


def test_keys_belong_to_one_organisation(client: TestClient, tenant: Tenant) -> None:
    other_org = make_tenant(client)
    mine = _post(client, tenant, "shared-key", name="exp")
    theirs = _post(client, other_org, "shared-key", name="exp")
    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert _run_ids(client, other_org) == [theirs.json()["id"]]


def test_a_replay_after_the_run_was_deleted_is_a_clear_conflict(
    client: TestClient, tenant: Tenant
) -> None:
    run = _post(client, tenant, "job-3").json()
    client.post(f"/v1/runs/{run['id']}/cancel", headers=tenant.headers)
    assert client.delete(f"/v1/runs/{run['id']}", headers=tenant.headers).status_code == 204
    assert_problem(_post(client, tenant, "job-3"), 409, "idempotent_run_deleted")


def test_concurrent_posts_with_one_key_make_exactly_one_run(
    client: TestClient, server_b: LiveServer
) -> None:
    tenant = make_tenant(client)
    start = threading.Barrier(CONCURRENT_POSTS)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=server_b.url, timeout=30) as http:
            start.wait()
            headers = {**tenant.headers, "Idempotency-Key": "burst"}
            answers.append(http.post("/v1/runs", json=run_spec(name="burst"), headers=headers))

    threads = [threading.Thread(target=post) for _ in range(CONCURRENT_POSTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [201] * CONCURRENT_POSTS, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert (
        sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == CONCURRENT_POSTS - 1
    )
    assert _run_ids(client, tenant) == [answers[0].json()["id"]]

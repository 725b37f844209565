"""`GET /v1/runs/{id}` with an API key is one statement (core/runs/reads.py): same answers.

A run token's read takes the ORM path (`service.describe_run`), so reading one run both ways
shows the one-statement read returns the same document, with attempts and progress.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.db import session_scope
from core.runs import service
from core.runs.attempts import AttemptOutcome
from core.tenants.schemas import Principal, Role
from tests.api.expect import assert_problem
from tests.factories import Tenant, make_key, make_tenant
from tests.training_api.conftest import end_attempt, start, submit


def _orm_read(client: TestClient, tenant: Tenant, run_id: str) -> dict[str, Any]:
    app: FastAPI = client.app  # type: ignore[assignment]
    caller = Principal(org_id=tenant.org_id, key_id="key_test", role=Role.VIEWER)
    with session_scope(app.state.sessionmaker) as session:
        run = service.describe_run(session, caller, run_id, app.state.settings)
        document: dict[str, Any] = run.model_dump(mode="json")
        return document


def test_a_keys_read_of_a_running_retried_run_equals_the_orm_read(
    api: TestClient, org: Tenant
) -> None:
    run_id = submit(api, org, scheduling={"max_retries": 1})
    first = start(api, run_id)
    url = f"/v1/runs/{run_id}"
    api.post(f"{url}/heartbeat", json={"step": 0, "total_steps": 500}, headers=first.headers)
    assert end_attempt(api, run_id, AttemptOutcome.SYSTEM_FAILED) == "queued"
    second = start(api, run_id)
    beat = {"step": 100, "resumed_from_step": 100}
    assert api.post(f"{url}/heartbeat", json=beat, headers=second.headers).status_code == 204
    points = [{"step": 120, "values": {"loss": 0.5}}]
    api.post(f"{url}/metrics", json={"points": points}, headers=second.headers)
    by_key = api.get(url, headers=org.headers)
    by_token = api.get(url, headers=second.headers)
    assert by_key.status_code == by_token.status_code == 200
    assert by_key.json() == by_token.json()
    assert len(by_key.json()["attempts"]) == 2
    assert by_key.json()["latest_metrics"] == {"loss": 0.5}
    assert by_key.headers["ETag"] == by_token.headers["ETag"]


def test_a_keys_read_of_a_finished_run_equals_the_orm_read(api: TestClient, org: Tenant) -> None:
    run_id = submit(api, org)
    start(api, run_id)
    assert end_attempt(api, run_id, AttemptOutcome.SUCCEEDED) == "succeeded"
    response = api.get(f"/v1/runs/{run_id}", headers=org.headers)
    assert response.status_code == 200
    assert response.json() == _orm_read(api, org, run_id)
    assert response.json()["attempts"][0]["outcome"] == "succeeded"


def test_a_revoked_key_is_refused_at_once_by_plain_and_conditional_reads(
    api: TestClient, org: Tenant
) -> None:
    run_id = submit(api, org)
    viewer = make_key(api, org, "viewer")
    url = f"/v1/runs/{run_id}"
    etag = api.get(url, headers=viewer.headers).headers["ETag"]
    conditional = {**viewer.headers, "If-None-Match": etag}
    assert api.get(url, headers=conditional).status_code == 304
    key_id = api.get("/v1/me", headers=viewer.headers).json()["key"]["id"]
    assert api.delete(f"/v1/api-keys/{key_id}", headers=org.headers).status_code == 204
    assert_problem(api.get(url, headers=viewer.headers), 401, "unauthenticated")
    assert_problem(api.get(url, headers=conditional), 401, "unauthenticated")


def test_only_keys_that_may_see_a_running_run_read_it(api: TestClient, org: Tenant) -> None:
    run_id = submit(api, org)
    start(api, run_id)  # running: the one-statement path, not the pending run's ORM path
    scoped = make_key(api, org, "viewer", project="default")
    assert api.get(f"/v1/runs/{run_id}", headers=scoped.headers).status_code == 200
    stranger = make_tenant(api)
    for headers in (stranger.headers, {**stranger.headers, "If-None-Match": "*"}):
        assert_problem(api.get(f"/v1/runs/{run_id}", headers=headers), 404, "not_found")


def test_a_cancelled_runs_read_and_304_agree_on_both_databases(any_client: TestClient) -> None:
    tenant = make_tenant(any_client)
    run_id = submit(any_client, tenant)
    cancelled = any_client.post(f"/v1/runs/{run_id}/cancel", headers=tenant.headers)
    assert cancelled.json()["status"] == "cancelled"
    read = any_client.get(f"/v1/runs/{run_id}", headers=tenant.headers)
    assert read.status_code == 200
    assert read.json() == _orm_read(any_client, tenant, run_id) == cancelled.json()
    assert read.headers["ETag"] == cancelled.headers["ETag"]
    again = {**tenant.headers, "If-None-Match": read.headers["ETag"]}
    assert any_client.get(f"/v1/runs/{run_id}", headers=again).status_code == 304

"""`GET /v1/runs/{id}` with an API key is one statement (core/runs/reads.py): same answers.

A run token's read takes the ORM path (`explain.describe_run`), so reading one run both ways
shows the one-statement read returns the same document, with attempts and progress. On
PostgreSQL that statement runs on the event loop through asyncpg (core/aio.py); an app with
`async_reads=False` reads the same database through the threadpool, and both must agree.
"""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.app_state import app_async_db, app_sessionmaker, app_settings
from core.aio import APPLICATION_NAME, AsyncDatabase
from core.db import session_scope
from core.runs.attempts import AttemptOutcome
from core.scheduling import explain
from core.tenants.schemas import Principal, Role
from tests.api.expect import assert_problem
from tests.factories import Tenant, app_of, make_key, make_tenant
from tests.support.training import end_attempt, start, submit


def _orm_read(client: TestClient, tenant: Tenant, run_id: str) -> dict[str, Any]:
    app = app_of(client)
    caller = Principal(org_id=tenant.org_id, key_id="key_test", role=Role.VIEWER)
    with session_scope(app_sessionmaker(app)) as session:
        run = explain.describe_run(session, caller, run_id, app_settings(app))
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


def test_on_postgres_the_event_loop_read_equals_the_threadpool_read(
    api: TestClient, threadpool_api: TestClient, org: Tenant
) -> None:
    assert isinstance(app_async_db(app_of(api)), AsyncDatabase)
    assert app_async_db(app_of(threadpool_api)) is None
    run_id = submit(api, org, labels={"team": "nlp"})
    work = start(api, run_id)
    url = f"/v1/runs/{run_id}"
    beat = {"step": 40, "total_steps": 400}
    assert api.post(f"{url}/heartbeat", json=beat, headers=work.headers).status_code == 204
    on_loop = api.get(url, headers=org.headers)
    in_thread = threadpool_api.get(url, headers=org.headers)
    assert on_loop.status_code == in_thread.status_code == 200
    assert on_loop.json() == in_thread.json()
    assert on_loop.json()["progress"]["fraction"] == 0.1
    assert on_loop.json()["labels"] == {"team": "nlp"}
    assert on_loop.headers["ETag"] == in_thread.headers["ETag"]
    conditional = {**org.headers, "If-None-Match": on_loop.headers["ETag"]}
    assert api.get(url, headers=conditional).status_code == 304
    assert threadpool_api.get(url, headers=conditional).status_code == 304


def test_the_event_loop_read_refuses_what_the_threadpool_read_refuses(
    api: TestClient, threadpool_api: TestClient, org: Tenant
) -> None:
    other = make_tenant(api)
    run_id = submit(api, org)
    for client in (api, threadpool_api):
        assert_problem(client.get(f"/v1/runs/{run_id}", headers=other.headers), 404, "not_found")
        missing = client.get("/v1/runs/run_00000000000000000000000000", headers=org.headers)
        assert_problem(missing, 404, "not_found")
        bogus = {"Authorization": "Bearer tp_" + "x" * 43}
        assert_problem(client.get(f"/v1/runs/{run_id}", headers=bogus), 401, "unauthenticated")


def test_the_event_loop_read_records_the_keys_use(
    api: TestClient, org: Tenant, postgres_url: str
) -> None:
    viewer = make_key(api, org, "viewer")
    run_id = submit(api, org)
    assert api.get(f"/v1/runs/{run_id}", headers=viewer.headers).status_code == 200
    keys = api.get("/v1/api-keys", headers=org.headers).json()
    used = [key for key in keys if key["prefix"] == viewer.key[: len(key["prefix"])]]
    assert len(used) == 1
    assert used[0]["last_used_at"] is not None


def test_the_event_loop_read_survives_its_connections_being_closed_by_the_server(
    api: TestClient, org: Tenant, postgres_url: str
) -> None:
    run_id = submit(api, org)
    url = f"/v1/runs/{run_id}"
    assert api.get(url, headers=org.headers).status_code == 200
    database = make_url(postgres_url).database
    with psycopg.connect(
        make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False),
        autocommit=True,
    ) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = %s",
            (database, APPLICATION_NAME),
        ).fetchall()
    assert ended
    assert all(row[0] for row in ended)
    for _ in range(3):
        assert api.get(url, headers=org.headers).status_code == 200
        assert api.get("/v1/runs?limit=5", headers=org.headers).status_code == 200


LIST_QUERIES = (
    "limit=50",
    "limit=2",
    "status=running&status=cancelled",
    "labels=team=nlp",
    "labels=team",
    "name_prefix=lst-a",
    "created_after=2020-01-01T00:00:00Z&limit=3",
    "created_before=2020-01-01T00:00:00Z",
    "changed_since=0",
    "changed_since=0&limit=2",
    "project=default",
    "project=default&changed_since=0",
)


def test_lists_and_the_change_feed_on_the_event_loop_equal_the_threadpool_ones(
    api: TestClient, threadpool_api: TestClient, org: Tenant
) -> None:
    names = ("lst-a1", "lst-a2", "lst-b1", "lst-b2")
    ids = [
        submit(api, org, name=name, labels={"team": "nlp" if i % 2 else "cv"})
        for i, name in enumerate(names)
    ]
    work = start(api, ids[1])
    beat = {"step": 5, "total_steps": 50}
    assert (
        api.post(f"/v1/runs/{ids[1]}/heartbeat", json=beat, headers=work.headers).status_code == 204
    )
    assert api.post(f"/v1/runs/{ids[2]}/cancel", headers=org.headers).status_code == 200
    assert api.delete(f"/v1/runs/{ids[2]}", headers=org.headers).status_code == 204
    for query in LIST_QUERIES:
        on_loop = api.get(f"/v1/runs?{query}", headers=org.headers)
        in_thread = threadpool_api.get(f"/v1/runs?{query}", headers=org.headers)
        assert on_loop.status_code == in_thread.status_code == 200, query
        assert on_loop.json() == in_thread.json(), query
        assert on_loop.headers["ETag"] == in_thread.headers["ETag"], query
        again = {**org.headers, "If-None-Match": on_loop.headers["ETag"]}
        assert api.get(f"/v1/runs?{query}", headers=again).status_code == 304, query
    listed = api.get("/v1/runs?limit=50", headers=org.headers).json()["data"]
    assert [run["id"] for run in listed] == [ids[3], ids[1], ids[0]]
    assert listed[1]["progress"]["fraction"] == 0.1
    feed = api.get("/v1/runs?changed_since=0", headers=org.headers).json()["data"]
    assert [run["id"] for run in feed if run["deleted"]] == [ids[2]]


def test_paging_on_the_event_loop_visits_every_run_once(api: TestClient, org: Tenant) -> None:
    ids = {submit(api, org) for _ in range(5)}
    seen: list[str] = []
    url = "/v1/runs?limit=2"
    while True:
        page = api.get(url, headers=org.headers).json()
        seen += [run["id"] for run in page["data"]]
        if not page["has_more"]:
            break
        url = f"/v1/runs?limit=2&after={page['next_cursor']}"
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    assert_problem(api.get("/v1/runs?after=bogus", headers=org.headers), 422, "validation_error")


def test_a_project_scoped_keys_list_on_the_event_loop_shows_only_its_project(
    api: TestClient, threadpool_api: TestClient, org: Tenant
) -> None:
    other = api.post("/v1/projects", json={"name": "elsewhere"}, headers=org.headers)
    assert other.status_code == 201, other.text
    scoped = make_key(api, org, "viewer", project="elsewhere")
    mine = submit(api, org, project="elsewhere")
    submit(api, org)
    for client in (api, threadpool_api):
        for query in ("limit=50", "changed_since=0", "project=elsewhere&changed_since=0"):
            data = client.get(f"/v1/runs?{query}", headers=scoped.headers).json()["data"]
            assert [run["id"] for run in data] == [mine], query
        for query in ("project=default", "project=default&changed_since=0"):
            refused = client.get(f"/v1/runs?{query}", headers=scoped.headers)
            assert_problem(refused, 403, "forbidden")
        for query in ("project=nope", "project=nope&changed_since=0"):
            assert_problem(client.get(f"/v1/runs?{query}", headers=org.headers), 404, "not_found")

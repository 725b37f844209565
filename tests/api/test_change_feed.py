"""The change feed: `changed_since=N` yields every change after N, tombstones included.

The concurrency test is the proof the issue asks for: writers on two API processes create,
edit, cancel and delete runs while a reader follows the feed; at the end the reader has seen
every run at exactly the version the database holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app_state import app_engine, app_sessionmaker
from core.db import session_scope
from core.models import Run
from core.runs.states import RunStatus, StatusReason, transition
from tests.factories import Tenant, app_of, create_run, make_key, make_tenant
from tests.support.feed_writers import RUNS_PER_WRITER, blocked_on_a_lock, write_one, write_runs
from tests.support.servers import LiveServer

WRITERS = 4


def _feed(
    client: TestClient | httpx.Client, tenant: Tenant, since: int, limit: int = 200
) -> dict[str, Any]:
    response = client.get(f"/v1/runs?changed_since={since}&limit={limit}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_feed_returns_only_runs_changed_after_n(client: TestClient, tenant: Tenant) -> None:
    quiet = create_run(client, tenant)
    busy = create_run(client, tenant)
    since = _feed(client, tenant, 0)["resource_version"]
    client.patch(f"/v1/runs/{busy['id']}", json={"priority": "high"}, headers=tenant.headers)
    changes = _feed(client, tenant, since)
    assert [r["id"] for r in changes["data"]] == [busy["id"]]
    assert changes["data"][0]["priority"] == "high"
    assert changes["resource_version"] > since
    assert _feed(client, tenant, changes["resource_version"])["data"] == []
    assert quiet["id"] not in {r["id"] for r in changes["data"]}


def test_a_deleted_run_appears_as_a_tombstone(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant)
    since = _feed(client, tenant, 0)["resource_version"]
    client.post(f"/v1/runs/{run['id']}/cancel", headers=tenant.headers)
    client.delete(f"/v1/runs/{run['id']}", headers=tenant.headers)
    changes = _feed(client, tenant, since)["data"]
    assert [(r["id"], r["deleted"]) for r in changes] == [(run["id"], True)]


def test_the_feed_pages_in_version_order(client: TestClient, tenant: Tenant) -> None:
    runs = [create_run(client, tenant)["id"] for _ in range(5)]
    first = _feed(client, tenant, 0, limit=2)
    assert first["has_more"] is True
    assert [r["id"] for r in first["data"]] == runs[:2]
    rest = _feed(client, tenant, first["resource_version"], limit=10)
    assert [r["id"] for r in rest["data"]] == runs[2:]
    assert rest["has_more"] is False


def _follow(url: str, tenant: Tenant, writing: threading.Event) -> Iterator[dict[str, Any]]:
    """Every feed entry, in small pages, until the writers are done and the feed is drained."""
    since = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        while True:
            done = not writing.is_set()  # read before the page: a final full pass follows the end
            page = _feed(http, tenant, since, limit=7)
            assert all(r["resource_version"] > since for r in page["data"])
            yield from page["data"]
            assert page["resource_version"] >= since
            since = page["resource_version"]
            if done and not page["has_more"]:
                return


def test_no_change_is_skipped_with_concurrent_writers(
    client: TestClient, server_a: LiveServer, server_b: LiveServer
) -> None:
    tenant = make_tenant(client)
    writing = threading.Event()
    writing.set()
    servers = [server_a.url, server_b.url]
    writers = [
        threading.Thread(target=write_runs, args=(servers[i % 2], tenant, i))
        for i in range(WRITERS)
    ]
    seen: dict[str, tuple[int, bool]] = {}

    def read() -> None:
        for run in _follow(server_a.url, tenant, writing):
            seen[run["id"]] = (run["resource_version"], run["deleted"])

    reader = threading.Thread(target=read)
    reader.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    writing.clear()
    reader.join(timeout=60)
    assert not reader.is_alive()
    assert seen == _database_view(client, tenant)
    assert len(seen) == WRITERS * RUNS_PER_WRITER


def _database_view(client: TestClient, tenant: Tenant) -> dict[str, tuple[int, bool]]:
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as session:
        rows = session.execute(
            select(Run.id, Run.resource_version, Run.deleted_at).where(Run.org_id == tenant.org_id)
        )
        return {run_id: (version, deleted is not None) for run_id, version, deleted in rows}


def test_a_change_that_commits_late_is_not_skipped(
    client: TestClient, server_b: LiveServer
) -> None:
    """A worker's transaction takes a version, then a faster writer commits a later one while
    a reader reads the feed; the slow change, committed last, must still reach that reader."""
    tenant = make_tenant(client)
    reader = make_key(client, tenant, "viewer")  # its own key: reading never waits on writers
    run = create_run(client, tenant)
    since = _feed(client, reader, 0)["resource_version"]
    seen: dict[str, int] = {}
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as slow:
        loaded = slow.get(Run, run["id"])
        assert loaded is not None
        transition(slow, loaded, RunStatus.QUEUED, StatusReason.QUEUED_FOR_CAPACITY)
        writer = threading.Thread(target=write_one, args=(server_b.url, tenant))
        writer.start()
        blocked_on_a_lock(app_engine(app), writer)
        page = _feed(client, reader, since)  # read while the slow change is uncommitted
        seen.update({r["id"]: r["resource_version"] for r in page["data"]})
        since = page["resource_version"]
    writer.join()
    page = _feed(client, reader, since)
    seen.update({r["id"]: r["resource_version"] for r in page["data"]})
    truth = _database_view(client, tenant)
    assert seen == {run_id: version for run_id, (version, _) in truth.items()}
    assert len(seen) == 2


def test_filters_with_the_feed_are_refused_not_ignored(client: TestClient, tenant: Tenant) -> None:
    """Found by schemathesis: `labels` with `changed_since` was never even parsed, so a bad
    selector was a 200 and a good one silently returned runs it did not match."""
    response = client.get(
        "/v1/runs",
        params={"changed_since": 0, "labels": "team=nlp", "status": "running"},
        headers=tenant.headers,
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "filter_not_with_changed_since"
    assert "`status`, `labels`" in body["detail"]
    assert {error["parameter"] for error in body["errors"]} == {"status", "labels"}
    only_project = client.get(
        "/v1/runs", params={"changed_since": 0, "project": "default"}, headers=tenant.headers
    )
    assert only_project.status_code == 200

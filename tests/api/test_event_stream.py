"""Event streams (issue 19): `GET /v1/events` and a run's events as Server-Sent Events.

The resume test is the proof the issue asks for, the change feed's kind: writers on two API
processes create, edit, cancel and delete runs, one transaction commits late, while a reader
follows the stream and drops its connection every few events, resuming with `Last-Event-ID`;
at the end it has seen every event of its org exactly once, in version order.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from api.app import create_app
from api.app_state import app_engine, app_sessionmaker
from core.db import session_scope
from core.models import Run, RunEvent
from core.runs.states import RunStatus, StatusReason, transition
from core.settings import Settings
from tests.factories import Tenant, app_of, create_run, make_key, make_tenant
from tests.support.feed_writers import blocked_on_a_lock, write_one, write_runs
from tests.support.servers import LiveServer, StartServer

WRITERS = 4
SSE = {"Accept": "text/event-stream"}
DEADLINE_S = 60.0


@dataclass(frozen=True)
class Message:
    id: int | None
    event: str | None
    data: dict[str, Any] | None
    comment: bool = False


def messages(response: httpx.Response) -> Iterator[Message]:
    """SSE messages (and comment lines) as they arrive."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield Message(None, None, None, comment=True)
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            if "data" in fields:
                yield Message(
                    int(fields["id"]) if "id" in fields else None,
                    fields.get("event"),
                    json.loads(fields["data"]),
                )
            fields = {}


@pytest.fixture(scope="session")
def streaming(start_server: StartServer, postgres_url: str) -> LiveServer:
    """An API process whose idle streams say so every 0.3 s."""
    return start_server(postgres_url, sse_keepalive_seconds="0.3")


def _org_events(client: TestClient, tenant: Tenant) -> list[int]:
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as session:
        rows = session.scalars(
            select(RunEvent.resource_version)
            .where(RunEvent.org_id == tenant.org_id)
            .order_by(RunEvent.resource_version)
        )
        return list(rows)


def test_a_runs_stream_replays_its_history_then_follows(
    client: TestClient, streaming: LiveServer
) -> None:
    tenant = make_tenant(client)
    run = create_run(client, tenant)
    headers = {**tenant.headers, **SSE}
    with (
        httpx.Client(base_url=streaming.url, timeout=10) as http,
        http.stream("GET", f"/v1/runs/{run['id']}/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = messages(response)
        first = next(m for m in seen if not m.comment)
        assert (first.event, first.id) == ("run.created", run["resource_version"])
        cancelled = client.post(f"/v1/runs/{run['id']}/cancel", headers=tenant.headers).json()
        second = next(m for m in seen if not m.comment)
        assert second.event == "run.status"
        assert second.id == cancelled["resource_version"]
        assert second.data is not None
        assert (second.data["to_status"], second.data["reason"]) == ("cancelled", "user_cancelled")
    # Without the header the route answers JSON pages, as before.
    page = client.get(f"/v1/runs/{run['id']}/events", headers=tenant.headers).json()
    assert [e["kind"] for e in page["data"]] == ["created", "status"]


def test_idle_streams_send_keepalives_and_hold_no_connection(
    client: TestClient, streaming: LiveServer
) -> None:
    tenant = make_tenant(client)
    app = app_of(client)
    count = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
    with app_engine(app).connect() as conn:
        before = conn.execute(count).scalar_one()
    opened = 20
    with httpx.Client(base_url=streaming.url, timeout=10) as http:
        streams = [
            http.stream("GET", "/v1/events", headers={**tenant.headers, **SSE})
            for _ in range(opened)
        ]
        responses = [s.__enter__() for s in streams]
        try:
            for response in responses:  # each says "keep-alive" while nothing happens
                assert any(m.comment for m in _first(messages(response), 2))
            with app_engine(app).connect() as conn:
                during = conn.execute(count).scalar_one()
            assert during - before < opened // 2, (before, during)
        finally:
            for s in streams:
                s.__exit__(None, None, None)


def _first(source: Iterator[Message], n: int) -> list[Message]:
    return [next(source) for _ in range(n)]


def test_the_org_stream_is_scoped_and_filtered(client: TestClient, streaming: LiveServer) -> None:
    tenant, other = make_tenant(client), make_tenant(client)
    since = max(_org_events(client, tenant) or [0])
    mine = create_run(client, tenant, labels={"team": "vision"})
    plain = create_run(client, tenant)
    create_run(client, other)  # another org's: never shown
    for run in (mine, plain):
        client.post(f"/v1/runs/{run['id']}/cancel", headers=tenant.headers)
    headers = {**tenant.headers, **SSE}
    with httpx.Client(base_url=streaming.url, timeout=10) as http:
        url = f"/v1/events?since={since}&labels=team%3Dvision"
        with http.stream("GET", url, headers=headers) as response:
            got = [m for m in _first(messages(response), 3) if not m.comment]
        assert {m.data["run_id"] for m in got if m.data} == {mine["id"]}
        url = f"/v1/events?since={since}&status=cancelled"
        with http.stream("GET", url, headers=headers) as response:
            got = []
            for m in messages(response):
                got += [] if m.comment else [m]
                if len(got) == 2:
                    break
        assert {m.data["run_id"] for m in got if m.data} == {mine["id"], plain["id"]}
        assert {m.data["to_status"] for m in got if m.data} == {"cancelled"}
        # Without asking for a stream, the same log comes as a JSON page.
        page = http.get(f"/v1/events?since={since}&status=cancelled", headers=tenant.headers)
        assert page.status_code == 200
        assert [e["run_id"] for e in page.json()["data"]] == [mine["id"], plain["id"]]
        assert page.json()["resource_version"] >= max(m.id or 0 for m in got)
        # Another org cannot ask for this org's run.
        missing = http.get(f"/v1/runs/{mine['id']}/events", headers={**other.headers, **SSE})
        assert missing.status_code == 404


def test_resuming_loses_and_repeats_nothing_under_concurrent_writers(
    client: TestClient, streaming: LiveServer, server_b: LiveServer
) -> None:
    tenant = make_tenant(client)
    reader = make_key(client, tenant, "viewer")
    since = max(_org_events(client, tenant) or [0])
    writing = threading.Event()
    writing.set()
    seen: list[int] = []
    drops = 0

    def follow() -> None:
        """Reads the stream, hanging up every 7 events and resuming where it stood."""
        nonlocal drops
        last = since
        deadline = time.monotonic() + DEADLINE_S
        with httpx.Client(base_url=streaming.url, timeout=10) as http:
            while time.monotonic() < deadline:
                headers = {**reader.headers, **SSE, "Last-Event-ID": str(last)}
                with http.stream("GET", "/v1/events", headers=headers) as response:
                    taken = 0
                    for m in messages(response):
                        if m.comment:
                            if (
                                not writing.is_set()
                                and seen[-1:] == _org_events(client, tenant)[-1:]
                            ):
                                return
                            continue
                        assert m.id is not None
                        seen.append(m.id)
                        last = m.id
                        taken += 1
                        if taken == 7:
                            drops += 1
                            break  # the connection drops mid-stream

    follower = threading.Thread(target=follow)
    follower.start()
    urls = [streaming.url, server_b.url]
    writers = [
        threading.Thread(target=write_runs, args=(urls[i % 2], tenant, i)) for i in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    # Meanwhile a worker-like transaction claims a version and commits after a faster writer
    # has queued behind it: its event must still reach the stream, once.
    run = create_run(client, tenant)
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as slow:
        loaded = slow.get(Run, run["id"])
        assert loaded is not None
        transition(slow, loaded, RunStatus.QUEUED, StatusReason.QUEUED_FOR_CAPACITY)
        fast = threading.Thread(target=write_one, args=(server_b.url, tenant))
        fast.start()
        blocked_on_a_lock(app_engine(app), fast)
    fast.join()
    for writer in writers:
        writer.join()
    writing.clear()
    follower.join(timeout=DEADLINE_S)
    assert not follower.is_alive()
    truth = [v for v in _org_events(client, tenant) if v > since]
    assert seen == truth  # every event, once, in order
    assert drops > 5
    with session_scope(app_sessionmaker(app)) as session:
        runs = session.scalar(select(func.count()).where(Run.org_id == tenant.org_id))
    assert runs == WRITERS * 8 + 2


def test_a_stream_hears_another_processs_change_in_the_embedded_mode(
    start_server: StartServer, sqlite_url: str
) -> None:
    """SQLite carries no NOTIFY: the server's version watcher wakes its event pump."""
    server = start_server(sqlite_url, sse_keepalive_seconds="0.3")
    app = create_app(Settings(database_url=sqlite_url, key_touch_interval_seconds=0))
    with TestClient(app, raise_server_exceptions=False) as writer:  # another process's writes
        tenant = make_tenant(writer)
        run = create_run(writer, tenant)
        headers = {**tenant.headers, **SSE}
        with (
            httpx.Client(base_url=server.url, timeout=10) as http,
            http.stream("GET", "/v1/events", headers=headers) as response,
        ):
            seen = messages(response)
            assert next(seen).comment  # subscribed and idle
            writer.post(f"/v1/runs/{run['id']}/cancel", headers=tenant.headers)
            event = next(m for m in seen if not m.comment)
            assert event.data is not None
            assert (event.data["run_id"], event.data["to_status"]) == (run["id"], "cancelled")

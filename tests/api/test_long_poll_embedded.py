"""Long polls in the embedded mode: SQLite carries no notifications between processes, yet a
change committed by another process (the embedded workers, another API) wakes a waiter promptly.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from tests.factories import create_run, make_tenant
from tests.support.long_polls import BLOCKED_S, PROMPT_S, WAIT_S, Poll
from tests.support.servers import LiveServer, StartServer


@pytest.fixture(scope="module")
def embedded_client(sqlite_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=sqlite_url, key_touch_interval_seconds=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def embedded_servers(start_server: StartServer, sqlite_url: str) -> tuple[LiveServer, LiveServer]:
    return start_server(sqlite_url), start_server(sqlite_url)


def test_a_long_poll_on_sqlite_wakes_on_a_change_through_another_process(
    embedded_client: TestClient, embedded_servers: tuple[LiveServer, LiveServer]
) -> None:
    waiting_on, changed_through = embedded_servers
    tenant = make_tenant(embedded_client)
    run = create_run(embedded_client, tenant)
    poll = Poll(waiting_on.url, tenant, run)
    poll.start()
    poll.join(timeout=BLOCKED_S)
    assert poll.is_alive(), "the poll answered before anything changed"
    url = f"{changed_through.url}/v1/runs/{run['id']}/cancel"
    httpx.post(url, headers=tenant.headers).raise_for_status()
    poll.join(timeout=PROMPT_S)
    assert not poll.is_alive(), f"still waiting {PROMPT_S}s after the change (wait={WAIT_S})"
    assert poll.result is not None
    assert poll.result.json()["status"] == "cancelled"

"""Long polls: `GET /v1/runs/{id}?wait=N&resource_version=V` answers as soon as the run moves.

They run against live API processes: a change made through another process must wake the
waiter (Postgres LISTEN/NOTIFY), and waiting clients must not hold database connections.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.factories import Tenant, create_run, make_tenant
from tests.support.long_polls import BLOCKED_S, PROMPT_S, WAIT_S, Poll
from tests.support.servers import LiveServer

WAITERS = 50


def _cancel_and_time(url: str, tenant: Tenant, run_id: str, poll: Poll) -> float:
    assert poll.is_alive(), "the poll answered before anything changed"
    cancelled_at = time.monotonic()
    httpx.post(f"{url}/v1/runs/{run_id}/cancel", headers=tenant.headers).raise_for_status()
    poll.join(timeout=WAIT_S + 20)
    return time.monotonic() - cancelled_at


def test_a_long_poll_wakes_on_a_change_through_the_same_process(
    client: TestClient, server_a: LiveServer
) -> None:
    tenant = make_tenant(client)
    run = create_run(client, tenant)
    poll = Poll(server_a.url, tenant, run)
    poll.start()
    poll.join(timeout=BLOCKED_S)
    assert _cancel_and_time(server_a.url, tenant, run["id"], poll) < PROMPT_S
    assert poll.result is not None
    assert poll.result.json()["status"] == "cancelled"


def test_a_long_poll_wakes_on_a_change_through_another_process(
    client: TestClient, server_a: LiveServer, server_b: LiveServer
) -> None:
    tenant = make_tenant(client)
    run = create_run(client, tenant)
    poll = Poll(server_a.url, tenant, run)
    poll.start()
    poll.join(timeout=BLOCKED_S)
    assert _cancel_and_time(server_b.url, tenant, run["id"], poll) < PROMPT_S
    assert poll.result is not None
    body = poll.result.json()
    assert body["status"] == "cancelled"
    assert body["resource_version"] > run["resource_version"]
    assert poll.result.headers["ETag"] == f'"{body["resource_version"]}"'


def test_a_long_poll_behind_the_run_answers_at_once(
    client: TestClient, server_a: LiveServer
) -> None:
    tenant = make_tenant(client)
    run = create_run(client, tenant)
    client.patch(f"/v1/runs/{run['id']}", json={"priority": "high"}, headers=tenant.headers)
    poll = Poll(server_a.url, tenant, run)
    poll.run()
    assert poll.elapsed < PROMPT_S
    assert poll.result is not None
    assert poll.result.json()["priority"] == "high"


def test_a_long_poll_without_a_change_answers_when_the_wait_ends(
    client: TestClient, server_a: LiveServer
) -> None:
    tenant = make_tenant(client)
    run = create_run(client, tenant)
    poll = Poll(server_a.url, tenant, run, wait=1)
    poll.run()
    assert 1.0 <= poll.elapsed < 1.0 + PROMPT_S
    assert poll.result is not None
    assert poll.result.json() == run


def test_a_long_poll_on_another_orgs_run_is_404(client: TestClient, server_a: LiveServer) -> None:
    owner, stranger = make_tenant(client), make_tenant(client)
    run = create_run(client, owner)
    poll = Poll(server_a.url, stranger, run, wait=5)
    poll.run()
    assert poll.result is not None
    assert poll.result.status_code == 404
    assert poll.elapsed < PROMPT_S


async def _many_waiters(
    url: str, tenant: Tenant, run: dict[str, Any]
) -> tuple[float, list[httpx.Response]]:
    """50 long polls, a normal GET timed while they all wait, then a cancel that frees them."""
    limits = httpx.Limits(max_connections=WAITERS + 5)
    async with httpx.AsyncClient(
        base_url=url, headers=tenant.headers, limits=limits, timeout=60
    ) as http:
        params = {"wait": WAIT_S, "resource_version": run["resource_version"]}
        waiters = [
            asyncio.create_task(http.get(f"/v1/runs/{run['id']}", params=params))
            for _ in range(WAITERS)
        ]
        done, _ = await asyncio.wait(waiters, timeout=BLOCKED_S)
        assert not done, "long polls answered before the run changed"
        started = time.monotonic()
        plain = await http.get(f"/v1/runs/{run['id']}")
        plain_s = time.monotonic() - started
        assert plain.status_code == 200
        (await http.post(f"/v1/runs/{run['id']}/cancel")).raise_for_status()
        return plain_s, list(await asyncio.gather(*waiters))


def test_fifty_waiting_clients_leave_the_pool_free(
    client: TestClient, server_a: LiveServer
) -> None:
    """server_a has a pool of 2 (+2 overflow): if waiters held connections, the GET would stall."""
    tenant = make_tenant(client)
    run = create_run(client, tenant)
    started = time.monotonic()
    plain_s, answers = asyncio.run(_many_waiters(server_a.url, tenant, run))
    assert plain_s < 1.0
    assert [a.status_code for a in answers] == [200] * WAITERS
    assert {a.json()["status"] for a in answers} == {"cancelled"}
    assert time.monotonic() - started < WAIT_S

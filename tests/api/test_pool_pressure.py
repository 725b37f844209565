"""More concurrent requests than worker threads and pooled connections together still finish.

`server_a` has 2 (+2) connections and the default 40 worker threads. A request that kept its
connection while queueing for its next thread would wait behind threads that wait for a
connection: a deadlock that lasts until the pool times out (30 s) and ends in 500s.
"""

from __future__ import annotations

import asyncio
import inspect
import time

import httpx
from fastapi.testclient import TestClient

from api.routing import UnitOfWorkRoute
from tests.api.routes import route_objects
from tests.factories import Tenant, make_tenant, run_spec
from tests.support.servers import LiveServer

BURST = 60
DEADLINE_S = 15.0


async def _burst(url: str, tenant: Tenant) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=BURST)
    async with httpx.AsyncClient(
        base_url=url, headers=tenant.headers, limits=limits, timeout=60
    ) as http:
        reads = [http.get("/v1/runs") for _ in range(BURST // 2)]
        writes = [http.post("/v1/runs", json=run_spec()) for _ in range(BURST // 2)]
        return list(await asyncio.gather(*reads, *writes))


def test_a_burst_larger_than_the_thread_pool_completes(
    client: TestClient, server_a: LiveServer
) -> None:
    tenant = make_tenant(client)
    started = time.monotonic()
    answers = asyncio.run(_burst(server_a.url, tenant))
    assert time.monotonic() - started < DEADLINE_S
    assert sorted({a.status_code for a in answers}) == [200, 201], [a.text for a in answers][:3]
    listed = client.get("/v1/runs?limit=200", headers=tenant.headers).json()["data"]
    assert len(listed) == BURST // 2


def test_every_sync_route_commits_in_its_own_thread() -> None:
    sync_routes = [r for r in route_objects() if not inspect.iscoroutinefunction(r.endpoint)]
    forgotten = [r.path for r in sync_routes if not isinstance(r, UnitOfWorkRoute)]
    assert sync_routes
    assert not forgotten, f"use route_class=UnitOfWorkRoute for {forgotten}"

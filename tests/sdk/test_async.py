"""`trainport.AsyncClient` has the sync client's surface: the same calls, awaited, live."""

from __future__ import annotations

import asyncio
import time

import trainport
from core.log_archive import LogArchive
from tests.factories import Tenant, write_log

SPEC = {"image": "python:3.11-slim", "command": ["python", "-c", "print('hi')"]}


def test_every_async_method_works_against_the_live_api(
    api_url: str, sdk_tenant: Tenant, archive: LogArchive
) -> None:
    async def scenario() -> None:
        async with trainport.AsyncClient(base_url=api_url, api_key=sdk_tenant.key) as client:
            assert (await client.me()).organization.id == sdk_tenant.org_id
            project = await client.projects.create("async-proj")
            assert await client.projects.get(project.id) == project
            assert "async-proj" in {p.name for p in await client.projects.list()}
            key = await client.api_keys.create("async-key", role="viewer")
            assert key.id in {k.id for k in await client.api_keys.list()}
            await client.api_keys.revoke(key.id)

            made = [await client.runs.create(SPEC, labels={"n": str(i)}) for i in range(3)]
            page = await client.runs.list(limit=2)
            assert [r.id async for r in page] == [r.id for r in reversed(made)]
            changed = await client.runs.list(changed_since=0, limit=2)
            assert [r.id async for r in changed] == [r.id for r in made]
            edited = await client.runs.update(made[0], priority="high", if_match=made[0].etag)
            assert edited.priority == "high"

            write_log(archive, made[1].id, 0, 0, "hello async")
            assert [line.text async for line in client.runs.logs(made[1])] == ["hello async"]

            started = time.monotonic()
            waited, _ = await asyncio.gather(
                client.runs.wait(made[1], timeout=20), _cancel_soon(client, made[1].id)
            )
            assert waited.status == "cancelled"
            assert time.monotonic() - started < 10
            assert (await client.runs.get(made[1])).is_terminal
            events = await client.runs.events(made[1], limit=1)
            assert [e.to_status async for e in events][-1] == "cancelled"
            await client.runs.delete(made[1])

    asyncio.run(scenario())


async def _cancel_soon(client: trainport.AsyncClient, run_id: str) -> None:
    await asyncio.sleep(0.2)  # let wait() reach its long-poll first
    await client.runs.cancel(run_id)


def test_a_list_iterates_with_or_without_await(api_url: str, sdk_tenant: Tenant) -> None:
    """The README's `async for r in client.runs.list()`, and `async for r in await ...` too."""

    async def scenario() -> None:
        async with trainport.AsyncClient(base_url=api_url, api_key=sdk_tenant.key) as client:
            made = [await client.runs.create(SPEC) for _ in range(3)]
            newest_first = [r.id for r in reversed(made)]
            assert [r.id async for r in client.runs.list(limit=2)] == newest_first
            assert [r.id async for r in await client.runs.list(limit=2)] == newest_first
            page = await client.runs.list(limit=2)
            assert (len(page.data), page.has_more) == (2, True)
            assert [e.kind async for e in client.runs.events(made[0])] == ["created"]

    asyncio.run(scenario())

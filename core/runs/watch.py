"""Long polling: wait until a run's resource_version passes a given one, holding no connection.

The waiter subscribes before it reads, so a change that lands between the read and the wait
still wakes it; reads go through `read_version`, which opens and closes its own transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from core.notify import hub


async def wait_for_change(
    run_id: str,
    after: int,
    timeout: float,
    read_version: Callable[[], Awaitable[int | None]],
) -> None:
    """Return once the run's version exceeds `after`, it disappears, or `timeout` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    flag = hub.subscribe(run_id)
    try:
        while True:
            flag.clear()
            version = await read_version()
            remaining = deadline - loop.time()
            if version is None or version > after or remaining <= 0:
                return
            try:
                await asyncio.wait_for(flag.wait(), remaining)
            except TimeoutError:
                return
    finally:
        hub.unsubscribe(run_id, flag)

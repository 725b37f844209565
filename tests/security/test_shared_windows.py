"""core/ratelimit_shared.py against the real Redis: overlapping flushes count each hit once."""

from __future__ import annotations

import asyncio
import secrets

from limits import parse

from core.ratelimit_shared import SharedWindows

REDIS = "redis://127.0.0.1:6379/0"


def test_overlapping_flushes_send_each_hit_once() -> None:
    """The background flush and an explicit one (shutdown, tests) may overlap: both used to
    send the same pending hits, so Redis counted them twice; and an overlapping flush's older
    answer (INCRBY 0 run first on another connection) could lower the total to 0 (CI)."""
    item = parse("100/hour")
    identifier = f"test-{secrets.token_hex(6)}"

    async def scenario() -> tuple[int, int]:
        windows = SharedWindows(REDIS, interval=3600)  # no background flush of its own
        for _ in range(5):
            assert windows.hit(item, "key", identifier) == 0.0
        await asyncio.gather(*(windows.flush() for _ in range(8)))
        [window] = windows.windows.values()
        [key] = windows.windows
        stored = int(await windows._client().get(key) or 0)
        await windows._client().aclose()
        return stored, window.total + window.pending + window.sending

    stored, seen_locally = asyncio.run(scenario())

    assert stored == 5
    assert seen_locally == 5

"""Rate-limit windows shared by API processes through Redis, synchronised in batches.

Asking Redis on every request costs a round trip per limit (a fifth to most of a whole
`GET /v1/runs/{id}`, bench/rate_limit_bench.py). Here each process counts locally and, at most
every `interval` seconds while it is counting, sends what it counted to Redis in one pipelined
round trip (`INCRBY` per window) and reads back the totals of all processes. A request is
refused when the last known total plus this process's unsent hits reach the limit.

Windows are aligned to the wall clock (`floor(now / period)`), so every process names the same
window the same way and a new window starts from zero everywhere without asking. The price: a
limit may be overshot by what the other processes admit between two synchronisations (with 4
processes at 500 req/s each and 50 ms, at most ~100 requests).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as redis
from limits import RateLimitItem
from redis.exceptions import RedisError

log = logging.getLogger("trainport.ratelimit")
PREFIX = "trainport:ratelimit"


@dataclass
class _Window:
    ends: float  # wall-clock second this window closes
    total: int = 0  # all processes' count at the last synchronisation (ours included)
    pending: int = 0  # this process's hits since then, not yet sent
    sending: int = 0  # this process's hits on their way to Redis (a flush in flight)
    expiring: bool = False  # whether this process has set the key's expiry in Redis


class SharedWindows:
    """Fixed windows counted locally and summed across processes in Redis every `interval` s."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.windows: dict[str, _Window] = {}
        self._clients: dict[int, redis.Redis] = {}  # per event loop (tests run several)
        self._flushing: asyncio.Task[None] | None = None

    def hit(self, item: RateLimitItem, scope: str, identifier: str, count: bool = True) -> float:
        """0 if admitted (counted when `count`), else the seconds until the window resets."""
        now = time.time()
        window = self._window(item, scope, identifier, now)
        if window.total + window.pending + window.sending + (1 if count else 0) > item.amount:
            return window.ends - now
        if count:
            window.pending += 1
            self._schedule()
        return 0.0

    def _window(self, item: RateLimitItem, scope: str, identifier: str, now: float) -> _Window:
        period = item.get_expiry()
        number = math.floor(now / period)
        key = f"{PREFIX}:{scope}:{identifier}:{item.amount}/{period}:{number}"
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = _Window(ends=(number + 1) * period)
        return window

    def _schedule(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.interval)
        await self.flush()

    async def flush(self) -> None:
        """Send this process's unsent hits; learn every window's total. One round trip."""
        now = time.time()
        for key in [
            k for k, w in self.windows.items() if w.ends < now and not w.pending and not w.sending
        ]:
            del self.windows[key]
        # (key, window, hits sent, whether this flush sets the key's expiry)
        dirty = [(k, w, w.pending, not w.expiring) for k, w in self.windows.items()]
        if not dirty:
            return
        for _, window, sent, _ in dirty:  # a flush that overlaps this one sends only newer hits
            window.pending -= sent
            window.sending += sent
        pipeline = self._client().pipeline(transaction=False)
        for key, window, sent, expire in dirty:
            pipeline.incrby(key, sent)
            if expire:  # once per window and process: the key outlives the window
                pipeline.expire(key, max(1, math.ceil(window.ends - now) + 1))
        try:
            results = iter(await pipeline.execute())
        except RedisError as exc:  # counted locally meanwhile; sent on the next flush
            log.warning("rate limit storage unavailable, counting locally: %s", exc)
            for _, window, sent, _ in dirty:
                window.sending -= sent
                window.pending += sent
            return
        for _, window, sent, expire in dirty:
            # A window's count only grows: an overlapping flush's older answer (on another
            # pooled connection) must not lower what a newer one learnt.
            window.total = max(window.total, int(next(results)))  # ours included
            window.sending -= sent
            if expire:
                next(results)
                window.expiring = True

    def _client(self) -> redis.Redis:
        loop = id(asyncio.get_running_loop())
        if loop not in self._clients:
            self._clients[loop] = redis.Redis.from_url(self.url)
        return self._clients[loop]

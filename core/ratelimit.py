"""Rate limits: per credential, per org, failed authentications per client address.

Counters: in memory in the embedded single-process mode (the `limits` library's fixed windows,
one increment per limit and request, its cheapest strategy); in Redis when the platform has
one, so several API processes share one count: batched (core/ratelimit_shared.py) by default,
or one `limits` round trip per limit and request with `TRAINPORT_RATE_LIMIT_SYNC_SECONDS=0`.

A storage outage fails open (logged): refusing every request because the limiter's Redis is
down would turn a degraded limiter into a full outage.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from core.errors import TrainportError
from core.ratelimit_shared import SharedWindows
from core.settings import Settings

log = logging.getLogger("trainport.ratelimit")


class RateLimited(TrainportError):
    """Too many requests in a window; `retry_after` seconds until the window resets."""

    def __init__(self, detail: str, retry_after: int, code: str = "rate_limited") -> None:
        super().__init__(detail, 429, code, "Too many requests")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Rule:
    """Named limits on one kind of identifier (`key`, `org`, `failed-auth`)."""

    scope: str
    items: tuple[RateLimitItem, ...]
    what: str  # how the refusal names the counted thing


def storage_url(settings: Settings) -> str:
    """The limiter's storage: the dedicated setting, else the Redis broker, else memory."""
    url = settings.rate_limit_storage_url or (
        settings.broker_url if settings.broker_url.startswith(("redis://", "rediss://")) else ""
    )
    return f"async+{url}" if url else "async+memory://"


class RateLimiter:
    """The process's limiter.

    Memory (and Redis with `rate_limit_sync_seconds` = 0): `limits`' fixed windows, one storage
    operation per limit and request. Redis otherwise: core/ratelimit_shared.py, counted locally
    and summed across processes every `rate_limit_sync_seconds`.
    """

    shared: SharedWindows | None

    def __init__(self, settings: Settings) -> None:
        url = storage_url(settings)
        sync_s = settings.rate_limit_sync_seconds
        self.shared = None
        if "redis" in url and sync_s > 0:
            self.shared = SharedWindows(url.removeprefix("async+"), sync_s)
            url = "async+memory://"  # unused: every check goes to `shared`
        options = {"implementation": "redispy"} if "redis" in url else {}
        storage = storage_from_string(url, wrap_exceptions=True, **options)
        self.strategy = FixedWindowRateLimiter(storage)
        self.enabled = settings.rate_limit_enabled
        self.per_key = Rule("key", tuple(parse_many(settings.rate_limit_per_key)), "this key")
        self.per_org = Rule("org", tuple(parse_many(settings.rate_limit_per_org)), "this org")
        self.failed_auth = Rule(
            "failed-auth",
            tuple(parse_many(settings.rate_limit_failed_auth)),
            "failed authentications from this address",
        )

    async def hit(self, rule: Rule, identifier: str) -> None:
        """Count one request against `rule`; RateLimited once any of its windows is full."""
        await self._check(rule, identifier, count=True)

    async def blocked(self, rule: Rule, identifier: str) -> None:
        """RateLimited if `rule`'s windows are already full, without counting a request."""
        await self._check(rule, identifier, count=False)

    async def _check(self, rule: Rule, identifier: str, count: bool) -> None:
        if not self.enabled:
            return
        for item in rule.items:
            wait = await self._wait(rule, item, identifier, count)
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                raise RateLimited(
                    f"Rate limit of {item} for {rule.what} reached; retry after {retry_after} s.",
                    retry_after,
                )

    async def _wait(self, rule: Rule, item: RateLimitItem, identifier: str, count: bool) -> float:
        """0 if admitted, else seconds until `item`'s window resets."""
        if self.shared is not None:
            return self.shared.hit(item, rule.scope, identifier, count)
        check = self.strategy.hit if count else self.strategy.test
        try:
            if await check(item, rule.scope, identifier):
                return 0.0
            stats = await self.strategy.get_window_stats(item, rule.scope, identifier)
        except StorageError as exc:
            log.warning("rate limit storage unavailable, not limiting: %s", exc)
            return 0.0
        return max(stats.reset_time - time.time(), 1.0)

    async def flush(self) -> None:
        """Send what this process counted to the shared storage now (tests, shutdown)."""
        if self.shared is not None:
            await self.shared.flush()


def credential_id(secret: str) -> str:
    """A presented credential's counter name: its digest, never the secret itself."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]

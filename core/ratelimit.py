"""Rate limits: per credential, per org, failed authentications per client address (issue 12).

Counters live in the `limits` library's storage: Redis when the platform has one (several API
processes share one count), memory in the embedded single-process mode. Fixed windows: one
counter increment per limit and request, the cheapest strategy `limits` has.

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
    """The process's limiter; every check is one storage round trip per limit (or none)."""

    def __init__(self, settings: Settings) -> None:
        url = storage_url(settings)
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
        if not self.enabled:
            return
        try:
            for item in rule.items:
                if not await self.strategy.hit(item, rule.scope, identifier):
                    raise self._refusal(rule, item, await self._retry_after(rule, item, identifier))
        except StorageError as exc:
            log.warning("rate limit storage unavailable, not limiting: %s", exc)

    async def blocked(self, rule: Rule, identifier: str) -> None:
        """RateLimited if `rule`'s windows are already full, without counting a request."""
        if not self.enabled:
            return
        try:
            for item in rule.items:
                if not await self.strategy.test(item, rule.scope, identifier):
                    raise self._refusal(rule, item, await self._retry_after(rule, item, identifier))
        except StorageError as exc:
            log.warning("rate limit storage unavailable, not limiting: %s", exc)

    async def _retry_after(self, rule: Rule, item: RateLimitItem, identifier: str) -> int:
        stats = await self.strategy.get_window_stats(item, rule.scope, identifier)
        return max(1, math.ceil(stats.reset_time - time.time()))

    @staticmethod
    def _refusal(rule: Rule, item: RateLimitItem, retry_after: int) -> RateLimited:
        return RateLimited(
            f"Rate limit of {item} for {rule.what} reached; retry after {retry_after} s.",
            retry_after,
        )


def credential_id(secret: str) -> str:
    """A presented credential's counter name: its digest, never the secret itself."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]

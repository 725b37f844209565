"""Sending webhook deliveries: claim due rows, POST them concurrently, record the outcomes.

`deliver_due` loops claim (short transaction) → send (no transaction open, up to
`webhook_concurrency` requests in flight on one keep-alive connection pool) → record (short
transaction) until nothing is due or the round's time budget is spent. Each request is signed
per Standard Webhooks (core/webhooks/signing.py) with this attempt's timestamp.

SSRF: the connection pool's network backend resolves each host itself and connects only to an
address core/egress.py permits (no second lookup to race), for every new connection; redirects
are never followed (a 3xx is a failed attempt), so no hop escapes the check. TLS still
verifies the URL's host name.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterable
from typing import Any

import anyio
import httpcore
import httpx
from sqlalchemy.orm import Session, sessionmaker

from core import db
from core.egress import EgressPolicy, EgressRefused, permitted, resolve
from core.models import utcnow
from core.settings import Settings
from core.webhooks import delivery, signing
from core.webhooks.delivery import Due, Outcome
from core.webhooks.service import policy

ROUND_BUDGET_S = 45.0  # a task returns after this long; the sweep starts the next one
log = logging.getLogger("trainport.webhooks")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is too many


class VettedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the egress policy permits, resolved here, once."""

    def __init__(self, egress: EgressPolicy) -> None:
        self._egress = egress
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await anyio.to_thread.run_sync(resolve, host, port)
        try:
            address = permitted(host, addresses, self._egress)
        except EgressRefused as refused:
            raise httpcore.ConnectError(refused.detail) from None
        return await self._inner.connect_tcp(
            str(address), port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks never connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def client(settings: Settings) -> httpx.AsyncClient:
    """One keep-alive pool for a round, every connection vetted; no redirects followed."""
    transport = httpx.AsyncHTTPTransport()
    transport._pool = httpcore.AsyncConnectionPool(  # the only way to pass a network backend
        ssl_context=ssl.create_default_context(),
        max_connections=settings.webhook_concurrency,
        max_keepalive_connections=settings.webhook_concurrency,
        keepalive_expiry=30.0,
        network_backend=VettedBackend(policy(settings)),
    )
    timeout = httpx.Timeout(settings.webhook_timeout_seconds)
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)


async def send(http: httpx.AsyncClient, due: Due) -> Outcome:
    started, clock = utcnow(), time.perf_counter()
    headers = signing.headers(due.secrets, due.id, int(time.time()), due.body)

    def outcome(**fields: Any) -> Outcome:
        latency = int((time.perf_counter() - clock) * 1000)
        return Outcome(due.id, due.endpoint_id, due.attempt, started, latency, **fields)

    try:
        response = await http.post(due.url, content=due.body, headers=headers)
    except httpx.HTTPError as exc:
        return outcome(error=f"{type(exc).__name__}: {exc}"[: delivery.EXCERPT])
    excerpt = response.text[: delivery.EXCERPT]
    error = None
    if response.is_redirect:
        error = f"redirect to {response.headers.get('location')!r} not followed"
    elif not response.is_success:
        error = f"HTTP {response.status_code}"
    return outcome(response_code=response.status_code, response_excerpt=excerpt, error=error)


async def _send_all(http: httpx.AsyncClient, batch: list[Due], limit: int) -> list[Outcome]:
    gate = asyncio.Semaphore(limit)

    async def one(due: Due) -> Outcome:
        async with gate:
            return await send(http, due)

    return list(await asyncio.gather(*(one(due) for due in batch)))


async def _rounds(factory: sessionmaker[Session], settings: Settings, budget_s: float) -> int:
    sent, deadline = 0, time.monotonic() + budget_s
    async with client(settings) as http:
        while time.monotonic() < deadline:
            with db.session_scope(factory) as session:
                batch = delivery.claim(session, settings)
            if not batch:
                break
            outcomes = await _send_all(http, batch, settings.webhook_concurrency)
            with db.session_scope(factory) as session:
                delivery.record(session, settings, outcomes)
            sent += len(outcomes)
    return sent


def deliver_due(
    factory: sessionmaker[Session], settings: Settings, budget_s: float = ROUND_BUDGET_S
) -> int:
    """Send every due delivery (within `budget_s`); how many attempts were made."""
    sent = asyncio.run(_rounds(factory, settings, budget_s))
    if sent:
        log.info("made %d webhook delivery attempt(s)", sent)
    return sent

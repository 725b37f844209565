"""SSRF rules at delivery time: the worker's own resolution and every redirect are checked.

An endpoint's URL passed the check when it was written; DNS may answer differently later
(rebinding), and a receiver may redirect. The sender's connection pool resolves and checks each
host itself, and never follows a redirect.
"""

from __future__ import annotations

import asyncio

import pytest

from core.models import utcnow
from core.settings import Settings
from core.webhooks.delivery import Due, Outcome
from core.webhooks.service import policy
from tests.support.webhook_receiver import start_receiver
from workers.webhooks import client, send

SECRET = "whsec_" + "A" * 32


def _send(settings: Settings, url: str) -> Outcome:
    due = Due("msg_test", "whe_test", url, b'{"type":"webhook.ping"}', (SECRET,), 1)

    async def go() -> Outcome:
        async with client(settings) as http:
            return await send(http, due, policy(settings))

    return asyncio.run(go())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_host_that_resolves_to_loopback_is_never_connected(host: str) -> None:
    receiver = start_receiver(lambda n: (200, {}))
    port = receiver.server.server_address[1]
    outcome = _send(Settings(database_url="sqlite://"), f"http://{host}:{port}/hook")
    assert outcome.response_code is None
    assert outcome.error is not None
    assert "not a public address" in outcome.error
    assert receiver.requests == []


def test_metadata_and_private_addresses_are_never_connected() -> None:
    settings = Settings(database_url="sqlite://", webhook_timeout_seconds=1)
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.1/", "http://[::1]/"):
        outcome = _send(settings, url)
        assert outcome.error is not None
        assert "not a public address" in outcome.error, outcome.error


def test_a_redirect_is_not_followed() -> None:
    target = start_receiver(lambda n: (200, {}))
    redirecting = start_receiver(lambda n: (307, {"location": target.url}))
    settings = Settings(database_url="sqlite://", webhook_allowed_networks=["127.0.0.0/8"])
    outcome = _send(settings, redirecting.url)
    assert outcome.response_code == 307
    assert not outcome.succeeded
    assert outcome.error is not None
    assert "not followed" in outcome.error
    assert len(redirecting.requests) == 1
    assert target.requests == []


def test_the_allow_list_lets_an_internal_receiver_in() -> None:
    receiver = start_receiver(lambda n: (204, {}))
    settings = Settings(database_url="sqlite://", webhook_allowed_networks=["127.0.0.0/8"])
    outcome = _send(settings, receiver.url)
    assert outcome.succeeded, outcome
    assert receiver.requests[0].headers["webhook-id"] == "msg_test"
    assert utcnow() >= outcome.started_at

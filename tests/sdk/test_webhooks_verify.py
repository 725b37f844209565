"""`trainport.webhooks.verify`: genuine deliveries pass; tampering and staleness are refused."""

from __future__ import annotations

import time

import pytest

import trainport
from core.webhooks import signing
from trainport.webhooks import WebhookVerificationError

BODY = b'{"type":"run.finished","timestamp":"2026-12-04T00:00:00Z","data":{"run":{"id":"run_1"}}}'


def _signed(secrets: list[str], body: bytes = BODY, at: int | None = None) -> dict[str, str]:
    return signing.headers(secrets, "msg_1", int(time.time()) if at is None else at, body)


def test_a_genuine_delivery_verifies() -> None:
    secret = signing.new_secret()
    event = trainport.webhooks.verify(BODY, _signed([secret]), secret)
    assert event["type"] == "run.finished"
    assert event["data"]["run"]["id"] == "run_1"


def test_a_tampered_body_is_refused() -> None:
    secret = signing.new_secret()
    headers = _signed([secret])
    with pytest.raises(WebhookVerificationError, match="no webhook signature"):
        trainport.webhooks.verify(BODY.replace(b"run_1", b"run_2"), headers, secret)


def test_a_tampered_signature_is_refused() -> None:
    secret = signing.new_secret()
    headers = _signed([secret])
    headers["webhook-signature"] = "v1," + "A" * 44
    with pytest.raises(WebhookVerificationError):
        trainport.webhooks.verify(BODY, headers, secret)


def test_another_secret_is_refused() -> None:
    headers = _signed([signing.new_secret()])
    with pytest.raises(WebhookVerificationError):
        trainport.webhooks.verify(BODY, headers, signing.new_secret())


def test_a_stale_timestamp_is_refused() -> None:
    secret = signing.new_secret()
    headers = _signed([secret], at=int(time.time()) - 3600)
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        trainport.webhooks.verify(BODY, headers, secret)


def test_missing_headers_are_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="missing"):
        trainport.webhooks.verify(BODY, {}, signing.new_secret())


def test_both_secrets_verify_during_a_rotation() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    headers = _signed([new, old])
    assert trainport.webhooks.verify(BODY, headers, old)["type"] == "run.finished"
    assert trainport.webhooks.verify(BODY, headers, new)["type"] == "run.finished"

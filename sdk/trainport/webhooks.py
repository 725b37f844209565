"""Verify a Trainport webhook: `trainport.webhooks.verify(payload, headers, secret)`.

Trainport signs every delivery per the Standard Webhooks convention: `webhook-id`,
`webhook-timestamp` (unix seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`, space-separated when more than one secret signs, as during a
rotation). Pass the raw request body (bytes, before any JSON parsing), its headers and the
endpoint's `whsec_...` secret; `verify` returns the parsed event or raises
`WebhookVerificationError`. A timestamp more than `tolerance` seconds from now is refused, so
a captured request cannot be replayed later; receivers should also drop a `webhook-id` they
have already processed (retries reuse it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from trainport.errors import TrainportError

TOLERANCE_SECONDS = 300


class WebhookVerificationError(TrainportError):
    """The signature does not match, a header is missing, or the timestamp is stale."""


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event (`{type, timestamp, data}`) if the delivery is genuine; else raises."""
    body = payload.encode() if isinstance(payload, str) else payload
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, stamp, signatures = (
            lower[h] for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
        )
        sent_at = int(stamp)
    except (KeyError, ValueError):
        raise WebhookVerificationError("missing or malformed webhook headers") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        raise WebhookVerificationError("the webhook timestamp is too old or too new")
    expected = _signature(secret, msg_id, sent_at, body)
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            event: dict[str, Any] = json.loads(body)
            return event
    raise WebhookVerificationError("no webhook signature matches the secret")


def _signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise WebhookVerificationError("the secret is not a whsec_ base64 secret") from None
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")

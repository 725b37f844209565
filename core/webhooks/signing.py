"""Standard Webhooks signatures (https://www.standardwebhooks.com): what receivers verify.

Each attempt carries `webhook-id` (the delivery's id, the same on every retry, so receivers can
drop duplicates), `webhook-timestamp` (unix seconds of this attempt) and `webhook-signature`:
`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the base64 part of the
endpoint's `whsec_...` secret; space-separated, one per secret that signs (two during a
rotation's grace window). The HMAC is a few lines, written here rather than pulling in the
`standardwebhooks` package (and its HTTP client and date libraries) for it; the SDK's
`trainport.webhooks.verify` checks the same scheme.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret: `whsec_` and 24 random bytes in base64 (the convention's shape)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one attempt, signed by every secret given."""
    signatures = " ".join(signature(s, msg_id, timestamp, body) for s in secrets_)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": "trainport-webhooks/1",
    }

"""Canonical JSON and the server's HMAC-SHA256 signature over it.

The key is derived from TRAINPORT_SECRET_KEY for this purpose only (run tokens use another
derivation), and `key_id` names it without revealing it, so a rotated secret is recognisable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

ALGORITHM = "hmac-sha256"
_PURPOSE = b"trainport/provenance/v1"


def canonical(document: Any) -> bytes:
    """Keys sorted, no spaces, UTF-8 without escapes: the bytes that are signed."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()


def key_id(secret_key: str) -> str:
    return "hmac-" + hashlib.sha256(_key(secret_key)).hexdigest()[:16]


def sign(secret_key: str, record: Any) -> str:
    return hmac.new(_key(secret_key), canonical(record), hashlib.sha256).hexdigest()


def signature_matches(secret_key: str, record: Any, signature: str) -> bool:
    try:
        expected = sign(secret_key, record)
    except (TypeError, ValueError):  # not JSON-representable: nothing we could have signed
        return False
    return hmac.compare_digest(expected.encode(), signature.lower().encode())

"""API key material: how a key is minted and how it is stored (only its SHA-256 digest)."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "tp_"
DISPLAY_CHARS = 10
_KEY_BYTES = 32


def mint_key() -> str:
    """A new secret key: `tp_` and 32 random bytes, url-safe base64."""
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def digest(key: str) -> str:
    # A fast hash is enough: keys carry 256 bits of entropy, nothing to brute-force.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + DISPLAY_CHARS]


def looks_like_key(candidate: str) -> bool:
    return candidate.startswith(KEY_PREFIX) and 40 <= len(candidate) <= 128

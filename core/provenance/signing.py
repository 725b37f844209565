"""Canonical JSON and the server's signatures over it: Ed25519, with HMAC-SHA256 still verified.

Records are signed with Ed25519, so anyone holding the public key (`GET /v1/provenance/keys`)
can check one offline, years later, without asking this server. The key pair is derived from
TRAINPORT_SECRET_KEY for this purpose only (HKDF with a purpose label; run tokens use another
derivation): every API process agrees on it and there is no second secret to manage. `key_id`
is a fingerprint of the public key, so a rotated secret is recognisable. Signatures made before
Ed25519 (`hmac-sha256`, keyed from the same secret) still verify here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALGORITHM = "ed25519"
HMAC_ALGORITHM = "hmac-sha256"
_PURPOSE = b"trainport/provenance/v1"
_ED25519_PURPOSE = b"trainport/provenance/ed25519/v1"
_ED25519_SIGNATURE_HEX = 128  # 64 bytes; an HMAC-SHA256 signature is 64 hex characters


def canonical(document: Any) -> bytes:
    """Keys sorted, no spaces, UTF-8 without escapes: the bytes that are signed."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    algorithm: str
    raw: bytes  # the 32-byte Ed25519 public key

    @property
    def base64(self) -> str:
        return base64.b64encode(self.raw).decode()

    @property
    def pem(self) -> str:
        encoded = Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return encoded.decode()


@lru_cache(maxsize=4)
def _signing_key(secret_key: str) -> Ed25519PrivateKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_ED25519_PURPOSE).derive(
        secret_key.encode()
    )
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key(secret_key: str) -> PublicKey:
    raw = (
        _signing_key(secret_key)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return PublicKey("ed25519-" + hashlib.sha256(raw).hexdigest()[:16], ALGORITHM, raw)


def key_id(secret_key: str) -> str:
    return public_key(secret_key).key_id


def sign(secret_key: str, record: Any) -> str:
    """The Ed25519 signature of the record's canonical bytes, hex."""
    return _signing_key(secret_key).sign(canonical(record)).hex()


def algorithm_of(signature: str, claimed: str | None) -> str:
    """The algorithm a signature is checked with: the one claimed, else told by its length
    (clients from before Ed25519 sent no algorithm)."""
    if claimed is not None:
        return claimed
    return ALGORITHM if len(signature) == _ED25519_SIGNATURE_HEX else HMAC_ALGORITHM


def signature_matches(
    secret_key: str, record: Any, signature: str, algorithm: str = ALGORITHM
) -> bool:
    """Whether `signature` is this server's `algorithm` signature of `record`."""
    try:
        message = canonical(record)
    except (TypeError, ValueError):  # not JSON-representable: nothing we could have signed
        return False
    if algorithm == HMAC_ALGORITHM:
        expected = hmac.new(_hmac_key(secret_key), message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), signature.lower().encode())
    try:
        _signing_key(secret_key).public_key().verify(bytes.fromhex(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _hmac_key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()


def hmac_key_id(secret_key: str) -> str:
    """The `key_id` that records signed with HMAC carried."""
    return "hmac-" + hashlib.sha256(_hmac_key(secret_key)).hexdigest()[:16]


def hmac_sign(secret_key: str, record: Any) -> str:
    """An HMAC-SHA256 signature as records carried before Ed25519 (kept for tests and tools)."""
    return hmac.new(_hmac_key(secret_key), canonical(record), hashlib.sha256).hexdigest()

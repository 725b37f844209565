"""Canonical JSON and the server's signatures over it: Ed25519 keys with ids, a keyring that
signs with one and verifies with several, and HMAC-SHA256 records from before Ed25519.

Records are signed with Ed25519, so anyone holding a public key (`GET /v1/provenance/keys`) can
check one offline, years later, without asking this server. The signing key is loaded from a PEM
file (TRAINPORT_SIGNING_KEY_FILE: a Kubernetes Secret or KMS-backed mount on the API only); in
development, without one, it is derived from TRAINPORT_SECRET_KEY (HKDF, its own purpose label,
so the run-token MAC key, derived with another label, neither yields it nor is yielded by it).
A key's id is a fingerprint of its public key. Retired keys stay in the keyring as verification
keys (TRAINPORT_VERIFICATION_KEY_FILES), so records they signed keep verifying after a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALGORITHM = "ed25519"
HMAC_ALGORITHM = "hmac-sha256"
_PURPOSE = b"trainport/provenance/v1"
_ED25519_PURPOSE = b"trainport/provenance/ed25519/v1"
_ED25519_SIGNATURE_HEX = 128  # 64 bytes; an HMAC-SHA256 signature is 64 hex characters


class KeyFileError(Exception):
    """A configured key file is missing or is not a PEM Ed25519 key."""


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

    @classmethod
    def of(cls, key: Ed25519PublicKey) -> PublicKey:
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls("ed25519-" + hashlib.sha256(raw).hexdigest()[:16], ALGORITHM, raw)

    @property
    def base64(self) -> str:
        return base64.b64encode(self.raw).decode()

    @property
    def pem(self) -> str:
        encoded = Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return encoded.decode()

    def verifies(self, message: bytes, signature: str) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(bytes.fromhex(signature), message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Keyring:
    """The key this server signs with and every key it verifies with (the signer's included)."""

    signer: Ed25519PrivateKey
    signer_id: str
    verifiers: dict[str, PublicKey]

    def sign(self, record: Any) -> str:
        """The Ed25519 signature of the record's canonical bytes, hex."""
        return self.signer.sign(canonical(record)).hex()

    def matching_key(self, record: Any, signature: str) -> str | None:
        """The id of the key that made `signature` over `record`, if any of ours did."""
        try:
            message = canonical(record)
        except (TypeError, ValueError):  # not JSON-representable: nothing we could have signed
            return None
        return next(
            (k for k, key in self.verifiers.items() if key.verifies(message, signature)), None
        )


def derived_signing_key(secret_key: str) -> Ed25519PrivateKey:
    """The development key: HKDF of TRAINPORT_SECRET_KEY with the provenance label."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_ED25519_PURPOSE).derive(
        secret_key.encode()
    )
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_public_keys(paths: Iterable[Path]) -> list[PublicKey]:
    """Each file, or each `*.pem` of each folder: a public key, or a private key's public half."""
    found: list[PublicKey] = []
    for path in paths:
        files = sorted(path.glob("*.pem")) if path.is_dir() else [path]
        found.extend(_public_key_in(file) for file in files)
    return found


def _public_key_in(path: Path) -> PublicKey:
    pem = _read(path)
    if b"PRIVATE KEY" in pem:
        return PublicKey.of(load_private_key(path).public_key())
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return PublicKey.of(key)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None


@lru_cache(maxsize=8)
def keyring(
    secret_key: str, signing_key_file: Path | None, verification_key_files: tuple[Path, ...]
) -> Keyring:
    """Loaded once per process and configuration: a rotation takes effect on restart."""
    signer = (
        load_private_key(signing_key_file)
        if signing_key_file is not None
        else derived_signing_key(secret_key)
    )
    own = PublicKey.of(signer.public_key())
    verifiers = {own.key_id: own}
    for key in load_public_keys(verification_key_files):
        verifiers.setdefault(key.key_id, key)
    return Keyring(signer, own.key_id, verifiers)


def algorithm_of(signature: str, claimed: str | None) -> str:
    """The algorithm a signature is checked with: the one claimed, else told by its length
    (clients from before Ed25519 sent no algorithm)."""
    if claimed is not None:
        return claimed
    return ALGORITHM if len(signature) == _ED25519_SIGNATURE_HEX else HMAC_ALGORITHM


def hmac_matches(secret_key: str, record: Any, signature: str) -> bool:
    """Whether `signature` is the HMAC-SHA256 records carried before Ed25519."""
    try:
        message = canonical(record)
    except (TypeError, ValueError):
        return False
    expected = hmac.new(_hmac_key(secret_key), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.lower().encode())


def _hmac_key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()


def hmac_key_id(secret_key: str) -> str:
    """The `key_id` that records signed with HMAC carried."""
    return "hmac-" + hashlib.sha256(_hmac_key(secret_key)).hexdigest()[:16]


def hmac_sign(secret_key: str, record: Any) -> str:
    """An HMAC-SHA256 signature as records carried before Ed25519 (kept for tests and tools)."""
    return hmac.new(_hmac_key(secret_key), canonical(record), hashlib.sha256).hexdigest()


def new_private_key_pem() -> tuple[bytes, PublicKey]:
    """A fresh Ed25519 key as unencrypted PKCS#8 PEM (for a Secret), and its public key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, PublicKey.of(key.public_key())

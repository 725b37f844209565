"""Signing-key rotation on disk: a new private key file, the old public key kept to verify.

A key folder (a Kubernetes Secret mounted on the API, or a KMS-backed mount) holds
`signing-key.pem` (the private key TRAINPORT_SIGNING_KEY_FILE names) and one
`retired-<key id>.pem` public key per key rotated out; pointing TRAINPORT_VERIFICATION_KEY_FILES
at the folder keeps every record those keys signed verifiable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.provenance import signing
from core.settings import DEVELOPMENT_SECRET_KEY, Settings

SIGNING_KEY_FILE = "signing-key.pem"


@dataclass(frozen=True)
class Rotated:
    signing_key_file: Path
    new_key_id: str
    retired_key_id: str | None


def rotate(folder: Path, settings: Settings) -> Rotated:
    """Write a new `signing-key.pem` in `folder`; keep the key it replaces as a retired public
    key (the folder's own, else the configured file's, else the key derived from a non-default
    TRAINPORT_SECRET_KEY, so records signed before the first rotation keep verifying)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / SIGNING_KEY_FILE
    retired = _current_public_key(target, settings)
    if retired is not None:
        _write(folder / f"retired-{retired.key_id}.pem", retired.pem.encode(), 0o644)
    pem, new = signing.new_private_key_pem()
    _write(target, pem, 0o600)
    return Rotated(target, new.key_id, retired.key_id if retired else None)


def _current_public_key(target: Path, settings: Settings) -> signing.PublicKey | None:
    for candidate in (target, settings.signing_key_file):
        if candidate is not None and candidate.exists():
            return signing.PublicKey.of(signing.load_private_key(candidate).public_key())
    secret = settings.secret_key.get_secret_value()
    if secret == DEVELOPMENT_SECRET_KEY:
        return None  # everyone knows the development key: never keep trusting it
    return signing.PublicKey.of(signing.derived_signing_key(secret).public_key())


def _write(path: Path, content: bytes, mode: int) -> None:
    """Atomically, so a reader never sees half a key; private keys are never world-readable."""
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as out:
        out.write(content)
    os.chmod(partial, mode)
    partial.replace(path)

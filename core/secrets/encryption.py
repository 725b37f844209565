"""Run secrets encrypted at rest: Fernet (AES-128-CBC with HMAC-SHA256) from `cryptography`.

Keys come from `TRAINPORT_SECRETS_KEY` (comma-separated) or `TRAINPORT_SECRETS_KEY_FILE` (one
per line, e.g. a mounted Kubernetes Secret), newest first. Each is any string of at least 32
characters; the Fernet key is HKDF-SHA256 of it, so `openssl rand -base64 32` is a fine key. The
first key encrypts and every key decrypts (MultiFernet): to rotate, put a new key first, run
`python -m api.admin secrets-reencrypt`, then drop the old one. In development with no key the
platform derives one from `secret_key` (production refuses to start without one, core/settings).

The plaintext binds the value to its org, project and name: a ciphertext copied into another
row (another org's) fails to decrypt instead of handing that org the value.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import Settings

_INFO = b"trainport run secrets v1"
_SEPARATOR = "\x00"  # never part of an org id, project id or name (API validation)


class SecretUnreadable(Exception):
    """A stored ciphertext no configured key opens, or one that belongs to another row."""


def cipher_for(settings: Settings) -> SecretCipher:
    keys = settings.secrets_keys() or ["development:" + settings.secret_key.get_secret_value()]
    return _cipher(tuple(keys))


@lru_cache(maxsize=8)
def _cipher(keys: tuple[str, ...]) -> SecretCipher:
    return SecretCipher(keys)


class SecretCipher:
    """Encrypts and decrypts one secret value for its (org, project, name)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._fernet = MultiFernet([Fernet(_fernet_key(key)) for key in keys])

    def __repr__(self) -> str:
        return "SecretCipher(<keys hidden>)"

    def encrypt(self, org_id: str, project_id: str, name: str, value: str) -> str:
        plaintext = _SEPARATOR.join((org_id, project_id, name, value))
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, org_id: str, project_id: str, name: str, ciphertext: str) -> str:
        try:
            plaintext = self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise SecretUnreadable(
                f"secret {name!r} cannot be decrypted with the configured keys"
            ) from None
        prefix = _SEPARATOR.join((org_id, project_id, name)) + _SEPARATOR
        if not plaintext.startswith(prefix):
            raise SecretUnreadable(f"secret {name!r} was stored for another org, project or name")
        return plaintext[len(prefix) :]

    def reencrypt(self, ciphertext: str) -> str:
        """The same plaintext under the newest key (MultiFernet.rotate)."""
        return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")


def _fernet_key(key: str) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key.encode())
    return base64.urlsafe_b64encode(derived)

"""The ObjectStore interface, the keys it accepts, and a reader that hashes what passes through.

Keys are relative, `/`-separated paths under the store's prefix (`orgs/<org id>/` for a tenant's
view, see `ObjectStore.scoped`); a key ending in `/` names a folder. Only core/storage/s3.py
talks to S3; everything else sees this interface.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from core.errors import TrainportError

CHUNK_BYTES = 1 << 20


class ObjectNotFound(TrainportError):
    def __init__(self, key: str) -> None:
        super().__init__(f"Object {key} was not found in storage.", 404, "not_found", "Not found")


class PayloadTooLarge(TrainportError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Uploads are limited to {limit} bytes.", 413, "payload_too_large", "Payload too large"
        )


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the prefix that was listed
    size: int


def check_key(key: str) -> str:
    """Refuse absolute keys and any `.`/`..`/empty segment (a trailing `/` is allowed)."""
    parts = key[:-1].split("/") if key.endswith("/") else key.split("/")
    bad = not key or key.startswith("/") or any(p in {"", ".", ".."} for p in parts)
    if bad or "\\" in key or any(ord(c) < 32 for c in key):
        raise TrainportError(f"{key!r} is not a valid storage path.", 422, "validation_error")
    return key


class ObjectStore(Protocol):
    """Where datasets and checkpoints live. Every method takes keys relative to the prefix."""

    def scoped(self, prefix: str) -> ObjectStore:
        """The same store under `prefix` (which ends in `/`): a tenant's or a run's view."""

    def uri(self, key: str) -> str:
        """`file:///abs/path` or `s3://bucket/prefix/key`: what a run is told."""

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        """Write from a file-like object, read once front to back (multipart on S3)."""

    def read_bytes(self, key: str, limit: int = 16 * CHUNK_BYTES) -> bytes:
        """A small object whole; ObjectNotFound if missing, PayloadTooLarge past `limit`."""

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        """A large object piece by piece; ObjectNotFound (before the first piece) if missing."""

    def list(self, prefix: str = "") -> list[StoredObject]:
        """Every object under `prefix`, keys relative to it, sorted."""

    def delete_prefix(self, prefix: str) -> None: ...

    def presigned_url(self, key: str, seconds: int) -> str | None:
        """A short-lived GET URL needing no credentials, or None where the API must serve it."""

    def presigned_put_url(self, key: str, seconds: int) -> str | None:
        """A short-lived PUT URL for one object, or None where clients cannot upload directly."""

    def presigned_delete_url(self, key: str, seconds: int) -> str | None:
        """A short-lived DELETE URL for one object, or None where clients cannot delete directly."""


class HashingReader:
    """A read-once, non-seekable view of `raw` that hashes and counts what is read."""

    def __init__(self, raw: BinaryIO, limit: int | None = None) -> None:
        self._raw = raw
        self._limit = limit
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.size += len(data)
        if self._limit is not None and self.size > self._limit:
            raise PayloadTooLarge(self._limit)
        self._hash.update(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def sha256_of_chunks(chunks: Iterator[bytes]) -> tuple[str, int]:
    """(hex digest, size) of a stream of chunks."""
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size

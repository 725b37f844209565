"""The embedded object store: plain files under one root folder, written atomically.

Objects are immutable on disk: each file is made read-only (0444) before it is renamed into
place, and a later put replaces it with a new file. Dataset versions in particular cannot be
changed by whoever can reach their folder (runs see them through a read-only mount as well),
and the root folder is the platform's alone (0700), so the world-readable bits serve only
the sandboxed ranks that are shown a version's folder (docs/security-sandbox.md)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from core.storage.base import (
    CHUNK_BYTES,
    ObjectNotFound,
    ObjectStore,
    PayloadTooLarge,
    StoredObject,
    check_key,
)


class LocalObjectStore:
    """Objects as files under `root/prefix`; a run on this machine reads them in place."""

    def __init__(self, root: Path, prefix: str = "") -> None:
        self.root = root.resolve()
        self.prefix = prefix

    def scoped(self, prefix: str) -> ObjectStore:
        return LocalObjectStore(self.root, self.prefix + check_key(prefix))

    def _path(self, key: str) -> Path:
        return self.root / (self.prefix + check_key(key)) if key else self.root / self.prefix

    def _existing(self, key: str) -> Path:
        """The object's file for reading; never through a symbolic link (a run can plant one
        in the folders it writes, such as its checkpoints, pointing at another org's files)."""
        path = self._path(key)
        if path.resolve() != path:
            raise ObjectNotFound(key)
        return path

    def uri(self, key: str) -> str:
        uri = self._path(key).as_uri()
        return uri + "/" if key.endswith("/") or not key else uri

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda sink: sink.write(data))

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        def copy(sink: BinaryIO) -> None:
            while chunk := stream.read(CHUNK_BYTES):
                sink.write(chunk)

        self._write(key, copy)

    def _write(self, key: str, fill: Callable[[BinaryIO], object]) -> None:
        path = self._path(key)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the target, then renamed over it: readers never see half a file.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as sink:
                fill(sink)
            os.chmod(temporary, 0o444)  # immutable in fact: readable, never writable in place
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def read_bytes(self, key: str, limit: int = 16 * CHUNK_BYTES) -> bytes:
        path = self._existing(key)
        try:
            with path.open("rb") as source:
                data = source.read(limit + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        if len(data) > limit:
            raise PayloadTooLarge(limit)
        return data

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        path = self._existing(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        return self._chunks(path)

    @staticmethod
    def _chunks(path: Path) -> Iterator[bytes]:
        with path.open("rb") as source:
            while chunk := source.read(CHUNK_BYTES):
                yield chunk

    def list(self, prefix: str = "") -> list[StoredObject]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        found = [
            StoredObject(path.relative_to(base).as_posix(), path.stat().st_size)
            for path in base.rglob("*")
            if path.is_file() and not path.name.startswith(".upload-") and path.resolve() == path
        ]
        return sorted(found, key=lambda o: o.key)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)

    def presigned_url(self, key: str, seconds: int) -> str | None:
        return None  # local files are served by the API's download routes

    def presigned_put_url(self, key: str, seconds: int) -> str | None:
        return None  # local files arrive through the API's streamed upload

    def presigned_delete_url(self, key: str, seconds: int) -> str | None:
        return None  # a run on this machine deletes its own checkpoint files in place

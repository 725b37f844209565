"""Getting a version's files into place before any database work: stream and hash them into
the org's store, or read and hash an existing `s3://` prefix. No transaction is open meanwhile."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from core.datasets import sources
from core.datasets.schemas import FileEntry, check_path
from core.errors import InvalidInput
from core.ids import new_id
from core.settings import Settings
from core.storage.backends import external_s3, org_store
from core.storage.base import HashingReader, ObjectStore, PayloadTooLarge, sha256_of_chunks


@dataclass(frozen=True)
class StagedFiles:
    files: list[FileEntry]
    uri: str
    storage_key: str | None  # in the org's store; None for an external source
    source: str | None = None


def upload_files(
    settings: Settings, org_id: str, dataset_id: str, parts: Sequence[tuple[str, BinaryIO]]
) -> StagedFiles:
    """Stream each (path, file) into a fresh folder of the org's store, hashing on the way."""
    if not parts:
        raise InvalidInput("Upload at least one file (multipart parts named `files`).")
    paths = [check_path(path) for path, _ in parts]
    if len(set(paths)) != len(paths):
        raise InvalidInput("Each file path may appear only once in a version.")
    key = f"datasets/{dataset_id}/{new_id('upl')}/"
    folder = org_store(settings, org_id).scoped(key)
    budget = settings.max_upload_bytes
    try:
        files = [_put(folder, path, stream, budget) for path, stream in parts]
        if sum(entry.size for entry in files) > budget:
            raise PayloadTooLarge(budget)
    except BaseException:
        folder.delete_prefix("")
        raise
    return StagedFiles(files, folder.uri(""), key)


def _put(folder: ObjectStore, path: str, stream: BinaryIO, limit: int) -> FileEntry:
    reader = HashingReader(stream, limit)
    folder.put_stream(path, reader)  # type: ignore[arg-type]  # read-once file-like
    return FileEntry(path=path, size=reader.size, sha256=reader.sha256)


def read_source(settings: Settings, org_keys: tuple[str, ...], uri: str) -> StagedFiles:
    """List and hash every object under an `s3://bucket/prefix/` the org may read from.

    `org_keys`: the org's id and name, as `TRAINPORT_DATASET_SOURCES` may name it
    (core/datasets/sources.py decides; nothing is read before it has).
    """
    sources.allowed_source(settings, org_keys, uri)
    source = external_s3(settings, uri)
    objects = source.list("")
    if not objects:
        raise InvalidInput(f"Nothing was found under {uri}.")
    files = []
    for item in objects:
        digest, size = sha256_of_chunks(source.iter_chunks(check_path(item.key)))
        files.append(FileEntry(path=item.key, size=size, sha256=digest))
    return StagedFiles(files, source.uri(""), None, source=source.uri(""))


def discard(settings: Settings, org_id: str, staged: StagedFiles) -> None:
    """Remove an upload that turned out to duplicate an existing version."""
    if staged.storage_key is not None:
        org_store(settings, org_id).scoped(staged.storage_key).delete_prefix("")

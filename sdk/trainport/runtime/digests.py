"""Content digests: one file's sha256, and a directory's digest as the platform computes it.

A dataset version (and a checkpoint) is identified by a sha256 over its files' relative paths
and per-file sha256 digests, sorted by path; see `tree_digest` and docs/runtime-api.md.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileEntry:
    """One file of a checkpoint or dataset: its path relative to the root, size and sha256."""

    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, document: object) -> FileEntry:
        if not isinstance(document, dict):
            raise ValueError("a file entry must be an object")
        path, size, sha = document.get("path"), document.get("size"), document.get("sha256")
        if not isinstance(path, str) or not isinstance(size, int) or not isinstance(sha, str):
            raise ValueError(f"a file entry needs path, size and sha256: {document!r}")
        if not safe_relative(path):
            raise ValueError(f"unsafe file path in a manifest: {path!r}")
        return cls(path, size, sha.removeprefix("sha256:"))


def safe_relative(path: str) -> bool:
    """A relative POSIX path that stays inside its root (no `..`, no absolute paths)."""
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def file_sha256(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def walk_files(root: Path, *, skip: Iterable[str] = ()) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, absolute path) of every regular file under root, sorted by path."""
    skipped = set(skip)
    found = [
        (p.relative_to(root).as_posix(), p)
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    ]
    yield from sorted(entry for entry in found if entry[0] not in skipped)


def describe_files(root: Path, *, skip: Iterable[str] = ()) -> list[FileEntry]:
    return [
        FileEntry(relative, path.stat().st_size, file_sha256(path))
        for relative, path in walk_files(root, skip=skip)
    ]


def tree_digest(entries: Iterable[FileEntry]) -> str:
    """`sha256:<hex>` over the lines `<path> <sha256 hex>\\n`, sorted by path."""
    hasher = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e.path):
        hasher.update(f"{entry.path} {entry.sha256}\n".encode())
    return f"sha256:{hasher.hexdigest()}"


def download_verified(
    folder: Path,
    files: list[FileEntry],
    fetch: Callable[[FileEntry, Path], None],
    source: str,
) -> Path:
    """`files` in local `folder`, fetched once (`fetch(entry, destination)`), each checked
    against its sha256 (`source` + the file's path names it in errors). The folder counts as
    complete only with its `.complete` marker, written after every file matched; a cut or
    corrupt download leaves nothing behind and is fetched again next time."""
    if (folder / ".complete").exists():
        return folder
    partial = folder.with_name(f".download-{uuid.uuid4().hex}")
    try:
        partial.mkdir(parents=True)
        for entry in files:
            destination = partial / entry.path
            destination.parent.mkdir(parents=True, exist_ok=True)
            fetch(entry, destination)
            if file_sha256(destination) != entry.sha256:
                raise OSError(f"{source}{entry.path} does not match its COMMIT digest")
        (partial / ".complete").touch()
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder

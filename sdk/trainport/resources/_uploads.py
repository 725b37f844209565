"""Files for a multipart upload, opened one at a time and reporting progress as they are read.

httpx reads each part in chunks while it sends the body, so a dataset of any size streams from
disk; it sizes each part with `seek`/`tell` (so the body has a Content-Length) and rewinds parts
with `seek(0)` before a retry, which the progress callback sees as negative progress.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

Progress = Callable[[int], None]  # bytes sent since the last call (negative on a retry)


class LazyFile:
    """A read-only file that opens on first read and closes at its end (no fd per part)."""

    def __init__(self, path: Path, progress: Progress | None = None) -> None:
        self.path, self.size, self._progress = path, path.stat().st_size, progress
        self._handle: IO[bytes] | None = None
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        if self._handle is None:
            self._handle = self.path.open("rb")
            self._handle.seek(self._position)
        chunk = self._handle.read(size)
        self._position += len(chunk)
        if self._progress is not None and chunk:
            self._progress(len(chunk))
        if not chunk or self._position >= self.size:
            self.close()
        return chunk

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.size}[whence]
        target += offset
        if self._progress is not None and target < self._position and whence == os.SEEK_SET:
            self._progress(target - self._position)  # rewound for a retry
        self._position = target
        if self._handle is not None:
            self._handle.seek(target)
        return target

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def dataset_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, file) for every regular file under `directory`, in path order;
    hidden files and folders (`.git`, `.DS_Store`) are left out."""
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a folder")
    found = []
    for path in directory.rglob("*"):
        relative = path.relative_to(directory)
        hidden = any(part.startswith(".") for part in relative.parts)
        if path.is_file() and not path.is_symlink() and not hidden:
            found.append((relative.as_posix(), path))
    yield from sorted(found)


def multipart_parts(
    files: list[tuple[str, Path]], progress: Progress | None
) -> list[tuple[str, tuple[str, LazyFile, str]]]:
    return [
        ("files", (relative, LazyFile(path, progress), "application/octet-stream"))
        for relative, path in files
    ]

"""Unpack a code snapshot into a folder, checking its digest: the one unpacker of the platform.

A snapshot is an uncompressed tar archive; its identity is `sha256:<hex>` of the archive's
bytes. The local executor unpacks from the store with `unpack`; on Kubernetes an init container
runs this file as a script (`python3 -c <this source>`, so any image with Python 3.9+ will do,
with nothing of ours installed): it asks the API, with the run's token, for a presigned URL of
`code/<digest>` (core/run_storage) and unpacks what it downloads. The pod holds no storage
credential.

Only regular files, folders and symbolic links that stay inside the folder are unpacked; an
absolute path, a `..` segment, a link that leaves, a device or a hard link refuses the whole
archive. Files keep their executable bit only. If the bytes do not hash to the digest, the
folder is emptied and the unpack fails: a run never starts on code other than its own.

Standard library only, no imports of ours: this source is also the init container's program.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import sys
import tarfile
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


class SnapshotRefused(Exception):
    """The archive is unsafe, or its bytes are not the digest's."""


class _HashingStream:
    """A read-once file over chunks that hashes everything read."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if n < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:n], self._buffer[n:]
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def unpack(chunks: Iterable[bytes], digest: str, folder: Path) -> int:
    """Unpack the archive whose bytes `chunks` yields into `folder`; its size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    stream = _HashingStream(chunks)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                _extract(archive, member, folder.resolve())
        stream.drain()
        found = "sha256:" + stream.hash.hexdigest()
        if found != digest:
            raise SnapshotRefused(f"the snapshot's bytes hash to {found}, not {digest}")
    except (SnapshotRefused, tarfile.TarError) as refused:
        _empty(folder)
        raise SnapshotRefused(str(refused)) from None
    return stream.size


def _extract(archive: tarfile.TarFile, member: tarfile.TarInfo, root: Path) -> None:
    name = member.name.rstrip("/")
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise SnapshotRefused(f"unsafe path in the snapshot: {member.name!r}")
    target = root.joinpath(*parts)
    if not target.parent.resolve().is_relative_to(root):  # through a link unpacked earlier
        raise SnapshotRefused(f"{member.name!r} would land outside the code folder")
    if member.isdir():
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
    elif member.isfile():
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        source = archive.extractfile(member)
        assert source is not None
        with open(target, "wb") as sink:
            shutil.copyfileobj(source, sink, CHUNK)
        os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
    elif member.issym():
        _link(member, target, root)
    else:
        raise SnapshotRefused(f"{member.name!r}: only files, folders and links are unpacked")


def _link(member: tarfile.TarInfo, target: Path, root: Path) -> None:
    destination = posixpath.normpath(
        posixpath.join(posixpath.dirname(member.name), member.linkname)
    )
    if member.linkname.startswith("/") or destination == ".." or destination.startswith("../"):
        raise SnapshotRefused(f"link {member.name!r} -> {member.linkname!r} leaves the code folder")
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.symlink(member.linkname, target)


def _empty(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


# -- the init container's program -------------------------------------------------------------


def _presigned(api_url: str, run_id: str, token: str, digest: str) -> str:
    body = json.dumps({"operations": [{"method": "GET", "key": f"code/{digest}"}]}).encode()
    request = urllib.request.Request(  # noqa: S310 - the platform's own API URL
        f"{api_url}/v1/runs/{run_id}/storage/presign",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
        url: str = json.load(answer)["operations"][0]["url"]
        return url


def _download(url: str) -> Iterator[bytes]:
    with urllib.request.urlopen(url, timeout=300) as answer:  # noqa: S310 - presigned by the API
        body: IO[bytes] = answer
        while chunk := body.read(CHUNK):
            yield chunk


def main() -> int:
    env = os.environ
    digest, folder = env["TRAINPORT_CODE_DIGEST"], Path(env["TRAINPORT_CODE_DIR"])
    url = _presigned(
        env["TRAINPORT_API_URL"], env["TRAINPORT_RUN_ID"], env["TRAINPORT_RUN_TOKEN"], digest
    )
    try:
        size = unpack(_download(url), digest, folder)
    except SnapshotRefused as refused:
        print(f"trainport: code snapshot {digest} refused: {refused}", file=sys.stderr)
        return 1
    print(f"trainport: unpacked code snapshot {digest} ({size} bytes) into {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

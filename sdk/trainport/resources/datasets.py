"""`client.datasets`: datasets and their immutable, content-addressed versions.

    version = client.datasets.push("my-text", "./corpus")     # creates the dataset if need be
    print(version.digest, version.ref)                          # sha256:..., my-text@1

Pushing the same content again returns the existing version (same digest). A run uses it with
`data: {datasets: ["my-text@1"]}` (or `my-text`, the newest, or a bare digest).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from trainport._http import APIRequest, segment
from trainport.errors import Conflict, NotFound
from trainport.resources._base import AsyncResource, SyncResource
from trainport.resources._uploads import Progress, dataset_files, multipart_parts
from trainport.training_models import Dataset, DatasetVersion, Manifest

_LIST = APIRequest("GET", "/v1/datasets")
_PIECE_BYTES = 2**20
_PUT_TIMEOUT = httpx.Timeout(None, connect=10.0)


def _path(name: str, suffix: str = "") -> str:
    return f"/v1/datasets/{segment(name)}{suffix}"


def _create(name: str, description: str) -> APIRequest:
    # A repeat after a lost answer would meet a 409; push() treats that as "exists".
    body = {"name": name, "description": description}
    return APIRequest("POST", "/v1/datasets", json=body, idempotent=False)


def _upload(name: str, directory: Path, progress: Progress | None) -> tuple[APIRequest, int]:
    files = list(dataset_files(directory))
    if not files:
        raise ValueError(f"{directory} has no files to upload")
    total = sum(path.stat().st_size for _, path in files)
    # Safe to retry: the same content always makes the same version.
    parts = multipart_parts(files, progress)
    # The server hashes everything before it answers: no read timeout.
    timeout = httpx.Timeout(None, connect=10.0)
    call = APIRequest("POST", _path(name, "/versions"), files=parts, timeout=timeout)
    return call, total


def _declare(name: str, directory: Path) -> tuple[APIRequest, dict[str, Path]]:
    """The presigned upload's declaration (path, size, sha256 of every file) and the files."""
    files = dict(dataset_files(directory))
    if not files:
        raise ValueError(f"{directory} has no files to upload")
    declared = []
    for path, local in files.items():
        with local.open("rb") as source:
            digest = hashlib.file_digest(source, "sha256").hexdigest()
        declared.append({"path": path, "size": local.stat().st_size, "sha256": digest})
    call = APIRequest("POST", _path(name, "/uploads"), json={"files": declared}, idempotent=False)
    return call, files


@dataclass(frozen=True)
class _Put:
    """One PUT a presigned upload asks for: a whole file, or one part of a big one."""

    url: str
    local: Path
    offset: int
    size: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Length": str(self.size)}  # S3 refuses chunked presigned PUTs

    def pieces(self, progress: Progress | None) -> Iterator[bytes]:
        with self.local.open("rb") as source:
            source.seek(self.offset)
            left = self.size
            while left:
                piece = source.read(min(_PIECE_BYTES, left))
                if not piece:
                    raise ValueError(f"{self.local} shrank while it was being uploaded")
                left -= len(piece)
                if progress is not None:
                    progress(len(piece))
                yield piece


def _puts(plan: dict[str, Any], files: dict[str, Path]) -> list[_Put]:
    """The PUTs of a plan: one per file, or one per part where the server split a file."""
    puts = []
    for target in plan["files"]:
        local = files[target["path"]]
        if target.get("parts"):
            puts += [_Put(p["url"], local, p["offset"], p["size"]) for p in target["parts"]]
        else:
            puts.append(_Put(target["url"], local, 0, local.stat().st_size))
    return puts


def _put(put: _Put, progress: Progress | None) -> None:
    """Straight to the object store, without our API key (the URL carries a signature)."""
    with httpx.Client(timeout=_PUT_TIMEOUT) as http:
        response = http.put(put.url, content=put.pieces(progress), headers=put.headers)
    response.raise_for_status()


async def _aput(put: _Put, progress: Progress | None) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in put.pieces(progress):
            yield piece

    async with httpx.AsyncClient(timeout=_PUT_TIMEOUT) as http:
        response = await http.put(put.url, content=pieces(), headers=put.headers)
    response.raise_for_status()


def _complete(name: str, upload_id: str) -> APIRequest:
    timeout = httpx.Timeout(None, connect=10.0)  # the server hashes everything first
    return APIRequest(
        "POST", _path(name, f"/uploads/{segment(upload_id)}/complete"), timeout=timeout
    )


def _register(name: str, source: str) -> APIRequest:
    return APIRequest("POST", _path(name, "/versions"), json={"source": source})


def _manifest(name: str, version: int | str) -> APIRequest:
    return APIRequest("GET", _path(name, f"/versions/{segment(str(version))}/manifest"))


def _datasets(body: Any) -> list[Dataset]:
    return [Dataset.model_validate(d) for d in body["data"]]


def upload_size(directory: str | Path) -> int:
    """Bytes `push` would send for `directory` (for a progress bar's total)."""
    return sum(path.stat().st_size for _, path in dataset_files(Path(directory)))


class Datasets(SyncResource):
    def create(self, name: str, *, description: str = "") -> Dataset:
        """A new, empty dataset (a slug name, unique in your organisation)."""
        return Dataset.model_validate(self._http.json(_create(name, description)))

    def list(self) -> list[Dataset]:
        return _datasets(self._http.json(_LIST))

    def get(self, name: str) -> Dataset:
        """A dataset with all its versions."""
        return Dataset.model_validate(self._http.json(APIRequest("GET", _path(name))))

    def push(
        self,
        name: str,
        directory: str | Path,
        *,
        description: str = "",
        progress: Progress | None = None,
    ) -> DatasetVersion:
        """Upload every file under `directory` (hidden ones aside) as a version of `name`,
        creating the dataset first if it does not exist. `progress(n)` is called as bytes go
        out. Returns the new version, or the existing one with the same content."""
        self._ensure(name, description)
        call, _ = _upload(name, Path(directory), progress)
        return DatasetVersion.model_validate(self._http.json(call))

    def push_direct(
        self,
        name: str,
        directory: str | Path,
        *,
        description: str = "",
        progress: Progress | None = None,
    ) -> DatasetVersion:
        """As `push`, but the files go straight to the server's S3 storage through presigned
        URLs (big files in parts) and the API only checks and hashes them after; a server on
        local storage answers Conflict (`presigned_uploads_unavailable`): use `push`."""
        self._ensure(name, description)
        call, files = _declare(name, Path(directory))
        plan = self._http.json(call)
        for put in _puts(plan, files):
            _put(put, progress)
        return DatasetVersion.model_validate(self._http.json(_complete(name, plan["id"])))

    def _ensure(self, name: str, description: str) -> None:
        try:
            self.get(name)
        except NotFound:
            with contextlib.suppress(Conflict):  # created meanwhile: push to it all the same
                self.create(name, description=description)

    def register(self, name: str, source: str) -> DatasetVersion:
        """A version made from an existing `s3://bucket/prefix/`, which the server hashes."""
        return DatasetVersion.model_validate(self._http.json(_register(name, source)))

    def manifest(self, name: str, version: int | str) -> Manifest:
        """Every file of a version (a number or `sha256:<hex>`), with download URLs."""
        return Manifest.model_validate(self._http.json(_manifest(name, version)))


class AsyncDatasets(AsyncResource):
    async def create(self, name: str, *, description: str = "") -> Dataset:
        return Dataset.model_validate(await self._http.json(_create(name, description)))

    async def list(self) -> list[Dataset]:
        return _datasets(await self._http.json(_LIST))

    async def get(self, name: str) -> Dataset:
        return Dataset.model_validate(await self._http.json(APIRequest("GET", _path(name))))

    async def push(
        self,
        name: str,
        directory: str | Path,
        *,
        description: str = "",
        progress: Progress | None = None,
    ) -> DatasetVersion:
        """Upload `directory` as a version of `name` (created if need be)."""
        await self._ensure(name, description)
        call, _ = _upload(name, Path(directory), progress)
        return DatasetVersion.model_validate(await self._http.json(call))

    async def push_direct(
        self,
        name: str,
        directory: str | Path,
        *,
        description: str = "",
        progress: Progress | None = None,
    ) -> DatasetVersion:
        """As `push`, through presigned URLs straight to the server's S3 storage."""
        await self._ensure(name, description)
        call, files = _declare(name, Path(directory))
        plan = await self._http.json(call)
        for put in _puts(plan, files):
            await _aput(put, progress)
        return DatasetVersion.model_validate(await self._http.json(_complete(name, plan["id"])))

    async def _ensure(self, name: str, description: str) -> None:
        try:
            await self.get(name)
        except NotFound:
            with contextlib.suppress(Conflict):  # created meanwhile: push to it all the same
                await self.create(name, description=description)

    async def register(self, name: str, source: str) -> DatasetVersion:
        return DatasetVersion.model_validate(await self._http.json(_register(name, source)))

    async def manifest(self, name: str, version: int | str) -> Manifest:
        return Manifest.model_validate(await self._http.json(_manifest(name, version)))

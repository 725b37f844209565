"""`client.datasets`: datasets and their immutable, content-addressed versions.

    version = client.datasets.push("my-text", "./corpus")     # creates the dataset if need be
    print(version.digest, version.ref)                          # sha256:..., my-text@1

Pushing the same content again returns the existing version (same digest). A run uses it with
`data: {datasets: ["my-text@1"]}` (or `my-text`, the newest, or a bare digest).
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import httpx

from trainport._http import APIRequest, segment
from trainport.errors import Conflict, NotFound
from trainport.resources._base import AsyncResource, SyncResource
from trainport.resources._uploads import Progress, dataset_files, multipart_parts
from trainport.training_models import Dataset, DatasetVersion, Manifest

_LIST = APIRequest("GET", "/v1/datasets")


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


def _put(url: str, local: Path) -> None:
    """One file to its presigned URL: straight to the object store, without our API key."""
    with local.open("rb") as source:
        response = httpx.put(url, content=source, timeout=httpx.Timeout(None, connect=10.0))
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
        try:
            self.get(name)
        except NotFound:
            with contextlib.suppress(Conflict):  # created meanwhile: push to it all the same
                self.create(name, description=description)
        call, _ = _upload(name, Path(directory), progress)
        return DatasetVersion.model_validate(self._http.json(call))

    def push_direct(self, name: str, directory: str | Path) -> DatasetVersion:
        """Upload `directory` as a version of the existing dataset `name` straight to the
        server's S3 storage through presigned URLs (the API only checks and hashes it after);
        a server on local storage answers Conflict: use `push`."""
        call, files = _declare(name, Path(directory))
        plan = self._http.json(call)
        for target in plan["files"]:
            _put(target["url"], files[target["path"]])
        return DatasetVersion.model_validate(self._http.json(_complete(name, plan["id"])))

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
        try:
            await self.get(name)
        except NotFound:
            with contextlib.suppress(Conflict):  # created meanwhile: push to it all the same
                await self.create(name, description=description)
        call, _ = _upload(name, Path(directory), progress)
        return DatasetVersion.model_validate(await self._http.json(call))

    async def register(self, name: str, source: str) -> DatasetVersion:
        return DatasetVersion.model_validate(await self._http.json(_register(name, source)))

    async def manifest(self, name: str, version: int | str) -> Manifest:
        return Manifest.model_validate(await self._http.json(_manifest(name, version)))

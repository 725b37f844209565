"""Where checkpoints live: a local directory or an S3 prefix, behind one small interface.

A checkpoint is a folder `step-<step:010d>/` under the run's checkpoint URI holding its files and,
written last, a `COMMIT` marker. The stores make "written last" true:

- `LocalStore` stages the files in a hidden sibling folder, writes `COMMIT` there, syncs, and
  renames the folder into place: the step folder appears complete or not at all.
- `PlatformStore` (platform_store.py), inside a platform run on S3 storage: every file goes up
  through a presigned URL the API mints for the run token, and only then `COMMIT`.
- `S3Store`, outside a platform run, with the user's own boto3 credentials: uploads every file
  (boto3 switches to multipart for large ones) and only then puts `COMMIT`; a cut upload leaves
  a folder without one, which readers ignore.

Deleting goes the other way round: `COMMIT` first, so a half-deleted checkpoint is never taken
for a complete one. boto3 is optional (`pip install 'trainport[s3]'`); it is imported only by
the S3 store.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from trainport.runtime.api import RunAPI
from trainport.runtime.digests import FileEntry, download_verified, walk_files
from trainport.runtime.environment import file_uri_path
from trainport.runtime.platform_store import PlatformStore

COMMIT = "COMMIT"
STEP_FOLDER = re.compile(r"^step-(\d{10})$")
STALE_STAGING_S = 3600.0  # staging folders this old belong to a crashed writer


def folder_name(step: int) -> str:
    return f"step-{step:010d}"


def folder_step(name: str) -> int | None:
    match = STEP_FOLDER.match(name)
    return int(match.group(1)) if match else None


class CheckpointStore(Protocol):
    uri: str

    def staging_dir(self) -> Path:
        """A new, empty local folder to write a checkpoint's files into."""

    def publish(self, staging: Path, name: str, marker: bytes) -> None:
        """Make `staging`'s files the checkpoint `name`, with `marker` as its COMMIT, last."""

    def discard(self, staging: Path) -> None: ...

    def names(self) -> list[str]:
        """The step folders present, committed or not."""

    def read_marker(self, name: str) -> bytes | None: ...

    def files_present(self, name: str, files: list[FileEntry]) -> bool: ...

    def local_dir(self, name: str, files: list[FileEntry]) -> Path:
        """A local folder holding the checkpoint's files (downloaded first if need be)."""

    def delete(self, name: str) -> None: ...


def open_store(uri: str, cache_dir: Path, api: RunAPI | None = None) -> CheckpointStore:
    """Inside a platform run (`api` given), `s3://` goes through the API with the run token: a
    run holds no storage credential. Outside one, boto3 with the user's own credentials."""
    if uri.startswith("s3://"):
        return PlatformStore(uri, cache_dir, api) if api is not None else S3Store(uri, cache_dir)
    return LocalStore(file_uri_path(uri))


def _fsync_dir(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not possible on every platform; the rename is still atomic
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(root: Path) -> None:
    for _, path in walk_files(root):
        with path.open("rb") as handle:
            os.fsync(handle.fileno())


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = root.as_uri() + "/"

    def staging_dir(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep()
        staging = self.root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        return staging

    def publish(self, staging: Path, name: str, marker: bytes) -> None:
        _fsync_tree(staging)
        with (staging / COMMIT).open("wb") as commit:
            commit.write(marker)
            commit.flush()
            os.fsync(commit.fileno())
        _fsync_dir(staging)
        target = self.root / name
        trash = self.root / f".trash-{uuid.uuid4().hex}"
        if target.exists():  # the same step saved again: the newer copy wins
            target.rename(trash)
        staging.rename(target)
        _fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if STEP_FOLDER.match(p.name) and p.is_dir()]

    def read_marker(self, name: str) -> bytes | None:
        try:
            return (self.root / name / COMMIT).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def files_present(self, name: str, files: list[FileEntry]) -> bool:
        folder = self.root / name
        for entry in files:
            path = folder / entry.path
            if not path.is_file() or path.stat().st_size != entry.size:
                return False
        return True

    def local_dir(self, name: str, files: list[FileEntry]) -> Path:
        return self.root / name

    def delete(self, name: str) -> None:
        folder = self.root / name
        (folder / COMMIT).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)

    def _sweep(self) -> None:
        """Remove staging and trash folders a crashed writer left behind."""
        now = time.time()
        for path in self.root.iterdir():
            if not path.name.startswith((".staging-", ".trash-")):
                continue
            try:
                stale = now - path.stat().st_mtime > STALE_STAGING_S
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(path, ignore_errors=True)


class S3Store:
    """`s3://bucket/prefix/` through boto3 and the user's own credentials (outside a platform
    run; inside one the platform gives no storage credential and `PlatformStore` is used)."""

    def __init__(self, uri: str, cache_dir: Path, client: Any = None) -> None:
        parsed = urlparse(uri)
        self.uri, self.bucket = uri, parsed.netloc
        self.prefix = parsed.path.lstrip("/")
        self.cache = cache_dir / "checkpoints" / hashlib.sha256(uri.encode()).hexdigest()[:16]
        self._given_client = client

    @functools.cached_property
    def _client(self) -> Any:
        """boto3's client, made on first use: a run that never checkpoints needs no boto3."""
        return self._given_client if self._given_client is not None else boto3().client("s3")

    def _key(self, name: str, path: str = "") -> str:
        return f"{self.prefix}{name}/{path}"

    def staging_dir(self) -> Path:
        staging = self.cache / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        return staging

    def publish(self, staging: Path, name: str, marker: bytes) -> None:
        for relative, path in walk_files(staging):
            self._client.upload_file(str(path), self.bucket, self._key(name, relative))
        self._client.put_object(Bucket=self.bucket, Key=self._key(name, COMMIT), Body=marker)
        shutil.rmtree(staging, ignore_errors=True)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def names(self) -> list[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.prefix) :].rstrip("/")
                if STEP_FOLDER.match(name):
                    found.append(name)
        return found

    def read_marker(self, name: str) -> bytes | None:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(name, COMMIT))
        except self._client.exceptions.NoSuchKey:
            return None
        body: bytes = response["Body"].read()
        return body

    def files_present(self, name: str, files: list[FileEntry]) -> bool:
        return True  # COMMIT is put only after every file was uploaded

    def local_dir(self, name: str, files: list[FileEntry]) -> Path:
        """Download into the cache once, every file checked against `COMMIT`."""

        def fetch(entry: FileEntry, destination: Path) -> None:
            key = self._key(name, entry.path)
            self._client.download_file(self.bucket, key, str(destination))

        source = f"s3://{self.bucket}/{self._key(name)}"
        return download_verified(self.cache / name, files, fetch, source)

    def delete(self, name: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(name, COMMIT))
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(name)):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
        shutil.rmtree(self.cache / name, ignore_errors=True)


def boto3() -> Any:
    try:
        return importlib.import_module("boto3")
    except ImportError:
        raise RuntimeError(
            "s3:// checkpoints need boto3: pip install 'trainport[s3]' (or boto3)"
        ) from None

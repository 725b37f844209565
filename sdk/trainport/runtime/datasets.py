"""`run.datasets["name"].path`: the pinned dataset as a local folder, verified by its digest.

- `file://` datasets are read in place, after checking that their files hash to the pinned
  digest; the check is remembered (by path, size, mtime, ctime and inode of every file) so
  later attempts do not hash again. The ctime and inode are what a writer cannot put back
  (`touch -d` restores an mtime, not a ctime), so a file changed since is hashed again.
- Anything else (`s3://`) is downloaded into `$TRAINPORT_CACHE_DIR/datasets/<digest hex>/` from
  the presigned URLs of the version's manifest, read with the run token (a URL that expired is
  presigned again through the run's storage routes); only outside a platform run (no API) with
  boto3 and the user's own credentials, from the prefix,
  each file checked against its sha256 and the whole against the digest, then renamed into
  place: the cache folder exists only once complete, and is reused by later attempts after
  the same remembered check; a cached copy that changed is downloaded again.

Nothing here runs until a dataset's `.path` is first read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote, urlparse

from trainport.runtime.api import RunAPI, RunAPIError
from trainport.runtime.digests import FileEntry, file_sha256, safe_relative, tree_digest, walk_files
from trainport.runtime.environment import DatasetRef, file_uri_path
from trainport.runtime.stores import boto3

EXPIRED_URL_STATUSES = (400, 403)  # how S3 answers a presigned URL past its expiry


class DatasetVerificationError(Exception):
    """A dataset's files do not hash to the digest the run was pinned to."""


class Dataset:
    def __init__(self, ref: DatasetRef, cache_dir: Path, api: RunAPI | None) -> None:
        self.name, self.digest, self.uri = ref.name, ref.digest, ref.uri
        self._cache_dir, self._api = cache_dir, api
        self._path: Path | None = None
        self._urls: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {self.digest!r}, {self.uri!r})"

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    @property
    def path(self) -> Path:
        """A local folder with exactly the version's files, verified against its digest."""
        with self._lock:
            if self._path is None:
                self._path = self._resolve()
            return self._path

    def _resolve(self) -> Path:
        if self.uri.startswith("file://"):
            return self._verify_in_place(file_uri_path(self.uri))
        target = self._cache_dir / "datasets" / self.hex
        if target.is_dir():
            try:
                return self._verify_in_place(target)
            except DatasetVerificationError:  # the cached copy changed: fetch it again
                shutil.rmtree(target, ignore_errors=True)
        return self._download(target)

    def manifest(self) -> list[FileEntry] | None:
        """The version's files from the API (None offline), checked against the digest."""
        if self._api is None:
            return None
        path = f"/v1/datasets/{quote(self.name, safe='')}/versions/{self.digest}/manifest"
        document = self._api.get(path)
        entries = [FileEntry.from_json(f) for f in document["files"]]
        self._urls = {f["path"]: f.get("url") for f in document["files"]}
        self._check_digest(entries, "the manifest")
        return entries

    def _check_digest(self, entries: list[FileEntry], what: str) -> None:
        if tree_digest(entries) != self.digest:
            raise DatasetVerificationError(
                f"dataset {self.name}: {what} hashes to {tree_digest(entries)}, "
                f"not the pinned {self.digest}"
            )

    def _verify_in_place(self, root: Path) -> Path:
        listed = self.manifest()
        paths = [e.path for e in listed] if listed else [r for r, _ in walk_files(root)]
        stats = [_stat(root, p) for p in paths]
        where = hashlib.sha256(str(root).encode()).hexdigest()[:16]  # in place, or the cache
        record = self._cache_dir / "datasets" / "verified" / f"{self.hex}-{where}.json"
        remembered = {"root": str(root), "files": [list(s) for s in stats]}
        if record.exists() and json.loads(record.read_text()) == remembered:
            return root
        entries = [
            FileEntry(p, s[1], file_sha256(root / p)) for p, s in zip(paths, stats, strict=True)
        ]
        self._check_digest(entries, f"the files under {root}")
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(remembered))
        return root

    def _download(self, target: Path) -> Path:
        entries = self.manifest()
        partial = target.parent / f".partial-{uuid.uuid4().hex}"
        try:
            if entries is not None:
                self._fetch_from_api(entries, partial)
            else:
                entries = _fetch_from_s3(self.uri, partial)
            self._check_files(entries, partial)
            try:
                partial.rename(target)
            except OSError:  # another rank on this machine finished first
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target

    def _fetch_from_api(self, entries: list[FileEntry], partial: Path) -> None:
        assert self._api is not None
        for entry in entries:
            url = self._urls.get(entry.path) or (
                f"/v1/datasets/{quote(self.name, safe='')}/versions/{self.digest}/files/"
                + quote(entry.path)
            )
            try:
                self._api.download(url, partial / entry.path)
            except RunAPIError as exc:
                if exc.status not in EXPIRED_URL_STATUSES or not url.startswith("http"):
                    raise
                # The manifest's presigned URLs are short-lived: ask for this file's again.
                self._api.download(self._fresh_url(entry.path), partial / entry.path)

    def _fresh_url(self, path: str) -> str:
        """A new presigned URL for one file, through the run's storage (its run token)."""
        key = f"datasets/{self.name}/{path}"
        body = {"operations": [{"method": "GET", "key": key}]}
        assert self._api is not None
        answer = self._api.post(self._api.run_path("/storage/presign"), body)
        return str(answer["operations"][0]["url"])

    def _check_files(self, entries: list[FileEntry], root: Path) -> None:
        for entry in entries:
            if file_sha256(root / entry.path) != entry.sha256:
                raise DatasetVerificationError(
                    f"dataset {self.name}: {entry.path} does not match its sha256"
                )
        self._check_digest(entries, "the downloaded files")


class Datasets(Mapping[str, Dataset]):
    """The run's pinned datasets by name; `run.datasets["text"].path`."""

    def __init__(self, refs: Mapping[str, DatasetRef], cache_dir: Path, api: RunAPI | None) -> None:
        self._datasets = {name: Dataset(ref, cache_dir, api) for name, ref in refs.items()}

    def __getitem__(self, name: str) -> Dataset:
        try:
            return self._datasets[name]
        except KeyError:
            pinned = ", ".join(sorted(self._datasets)) or "none"
            raise KeyError(f"no dataset {name!r} in this run (pinned: {pinned})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._datasets)

    def __len__(self) -> int:
        return len(self._datasets)


def _stat(root: Path, relative: str) -> tuple[str, int, int, int, int]:
    if not safe_relative(relative):
        raise DatasetVerificationError(f"unsafe path in a dataset: {relative!r}")
    path = root / relative
    if not path.is_file():
        raise DatasetVerificationError(f"{path} is missing")
    info = path.stat()
    return (relative, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


def _fetch_from_s3(uri: str, partial: Path) -> list[FileEntry]:
    """Without an API (outside a platform run): every object under the prefix, with boto3 and
    the user's own credentials; a platform run holds none."""
    client = boto3().client("s3")
    parsed = urlparse(uri)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    entries = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            if not safe_relative(relative):
                continue
            destination = partial / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(destination))
            entries.append(
                FileEntry(relative, destination.stat().st_size, file_sha256(destination))
            )
    return entries

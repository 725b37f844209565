"""Checkpoints in the platform's object store, reached through the API with the run token.

A run holds no storage credential (docs/runtime-api.md, section 7): for each object it asks
`POST /v1/runs/{id}/storage/presign` for a short-lived URL and uses it at once, and it lists
its checkpoint folder with `GET /v1/runs/{id}/storage/objects`. Keys are relative to the run's
storage root: `checkpoints/step-<step:010d>/<path>`.

A file above `multipart_threshold` goes up in parts (S3 takes at most 5 GiB in one PUT): the
API opens a multipart upload, each part is presigned (`PUT_PART`) right before it is sent, and
the API joins them. The guarantees are those of `S3Store`: every file is uploaded before
`COMMIT`; deleting removes `COMMIT` first; a download is kept only once every file matched its
sha256 in `COMMIT`.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from trainport.runtime.api import RunAPI
from trainport.runtime.digests import FileEntry, download_verified, walk_files

COMMIT = "COMMIT"
ROOT = "checkpoints/"
PRESIGN_BATCH = 1000  # the most operations the API presigns in one request
MULTIPART_THRESHOLD = 256 * 2**20
PART_BYTES = 64 * 2**20  # S3: at least 5 MiB (but the last), at most 10 000 parts
MAX_PARTS = 10_000


class PlatformStore:
    """The run's checkpoint location (`uri`, informative) through the run storage routes."""

    def __init__(
        self,
        uri: str,
        cache_dir: Path,
        api: RunAPI,
        *,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_bytes: int = PART_BYTES,
    ) -> None:
        self.uri, self.api = uri, api
        self.multipart_threshold, self.part_bytes = multipart_threshold, part_bytes
        self.cache = cache_dir / "checkpoints" / hashlib.sha256(uri.encode()).hexdigest()[:16]

    @staticmethod
    def _key(name: str, path: str = "") -> str:
        return f"{ROOT}{name}/{path}"

    def _presign(self, method: str, keys: list[str], **extra: Any) -> list[str]:
        urls: list[str] = []
        for start in range(0, len(keys), PRESIGN_BATCH):
            batch = keys[start : start + PRESIGN_BATCH]
            body = {"operations": [{"method": method, "key": key, **extra} for key in batch]}
            answer = self.api.post(self.api.run_path("/storage/presign"), body)
            urls.extend(str(op["url"]) for op in answer["operations"])
        return urls

    def _upload(self, key: str, path: Path) -> None:
        size = path.stat().st_size
        if size <= self.multipart_threshold:
            [url] = self._presign("PUT", [key])
            self.api.upload(url, path)
            return
        part_bytes = max(self.part_bytes, -(-size // MAX_PARTS))
        opened = self.api.post(self.api.run_path("/storage/multipart"), {"key": key})
        upload_id = str(opened["upload_id"])
        with path.open("rb") as source:
            for number in range(1, -(-size // part_bytes) + 1):
                [url] = self._presign("PUT_PART", [key], upload_id=upload_id, part_number=number)
                self.api.upload(url, source.read(part_bytes))
        complete = {"key": key, "upload_id": upload_id}
        self.api.post(self.api.run_path("/storage/multipart/complete"), complete)

    def _listing(self, prefix: str, delimiter: bool = False) -> Any:
        query = {"prefix": prefix, **({"delimiter": "/"} if delimiter else {})}
        return self.api.get(self.api.run_path(f"/storage/objects?{urlencode(query)}"))

    def staging_dir(self) -> Path:
        staging = self.cache / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        return staging

    def publish(self, staging: Path, name: str, marker: bytes) -> None:
        for relative, path in walk_files(staging):  # one URL at a time: each is used at once
            self._upload(self._key(name, relative), path)
        [commit] = self._presign("PUT", [self._key(name, COMMIT)])
        self.api.upload(commit, marker)  # last: the checkpoint exists from here on
        shutil.rmtree(staging, ignore_errors=True)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def names(self) -> list[str]:
        folders = self._listing(ROOT, delimiter=True)["prefixes"]
        return [str(folder)[len(ROOT) :].rstrip("/") for folder in folders]

    def read_marker(self, name: str) -> bytes | None:
        [url] = self._presign("GET", [self._key(name, COMMIT)])
        return self.api.fetch(url)

    def files_present(self, name: str, files: list[FileEntry]) -> bool:
        return True  # COMMIT is put only after every file was uploaded

    def local_dir(self, name: str, files: list[FileEntry]) -> Path:
        """Download into the cache once, every file checked against `COMMIT`."""

        def fetch(entry: FileEntry, destination: Path) -> None:
            [url] = self._presign("GET", [self._key(name, entry.path)])  # used at once
            self.api.download(url, destination)

        return download_verified(self.cache / name, files, fetch, f"{self.uri}{name}/")

    def delete(self, name: str) -> None:
        [commit] = self._presign("DELETE", [self._key(name, COMMIT)])
        self.api.delete(commit)  # first: a half-deleted folder is never taken for complete
        keys = [str(o["key"]) for o in self._listing(self._key(name))["objects"]]
        for url in self._presign("DELETE", keys) if keys else []:
            self.api.delete(url)
        shutil.rmtree(self.cache / name, ignore_errors=True)

"""`client.code`: a local folder uploaded once as a content-addressed code snapshot.

    upload = client.code.upload("./my-project")   # HEAD first: unchanged content sends nothing
    client.runs.create(image=..., command=["python", "train.py"], workdir=upload.digest)

`client.runs.create(..., workdir="./my-project")` does the same on its own. See workdir.py for
what is packed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainport._http import APIRequest, segment
from trainport.errors import NotFound
from trainport.resources._base import AsyncResource, SyncResource
from trainport.workdir import GitState, Packed, Progress, pack

TIMEOUT = 3600.0  # a large folder on a slow link


@dataclass(frozen=True)
class CodeUpload:
    digest: str
    size_bytes: int
    files: int
    uploaded: bool  # False: the server had this content already, nothing was sent
    git: GitState | None


def _head(digest: str) -> APIRequest:
    return APIRequest("HEAD", f"/v1/code/{segment(digest)}")


def _put(packed: Packed, progress: Progress | None, body: Callable[[], Any]) -> APIRequest:
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(packed.size)}
    path = f"/v1/code/{segment(packed.digest)}"
    return APIRequest("PUT", path, headers=headers, content=body, timeout=TIMEOUT)


def _result(packed: Packed, uploaded: bool) -> CodeUpload:
    return CodeUpload(packed.digest, packed.size, len(packed.entries), uploaded, packed.git)


class Code(SyncResource):
    def exists(self, digest: str) -> bool:
        """Whether your organisation already has this snapshot."""
        try:
            self._http.send(_head(digest))
        except NotFound:
            return False
        return True

    def upload(
        self,
        folder: str | Path,
        *,
        progress: Progress | None = None,
        max_bytes: int | None = None,
    ) -> CodeUpload:
        """Pack `folder` and upload it unless the server has the same content already.
        `progress(n)` hears of every n archive bytes read for sending."""
        packed = pack(folder, max_bytes)
        if self.exists(packed.digest):
            return _result(packed, uploaded=False)
        self._http.send(_put(packed, progress, lambda: packed.chunks(progress)))
        return _result(packed, uploaded=True)


class AsyncCode(AsyncResource):
    async def exists(self, digest: str) -> bool:
        try:
            await self._http.send(_head(digest))
        except NotFound:
            return False
        return True

    async def upload(
        self,
        folder: str | Path,
        *,
        progress: Progress | None = None,
        max_bytes: int | None = None,
    ) -> CodeUpload:
        """Pack and upload `folder`; see `Code.upload`."""
        import asyncio

        packed = await asyncio.to_thread(pack, folder, max_bytes)
        if await self.exists(packed.digest):
            return _result(packed, uploaded=False)

        async def body() -> AsyncIterator[bytes]:
            for chunk in packed.chunks(progress):
                yield chunk

        await self._http.send(_put(packed, progress, body))
        return _result(packed, uploaded=True)

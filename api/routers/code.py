"""`/v1/code/{digest}`: an org's content-addressed code snapshots (a run's `workdir`).

A client packs a folder into a tar archive, computes its sha256, asks `HEAD` whether the org
already has it (a second upload of the same content sends nothing), and only if not sends it
with `PUT`. The API hashes what arrives and refuses a body that is not the digest's
(core/code/snapshots.py); the body streams straight into the store, never buffered whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio.from_thread
import anyio.lowlevel
from fastapi import APIRouter, Path, Request, Response, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, SessionDep, SettingsDep
from api.routing import UnitOfWorkRoute
from core.code import snapshots
from core.code.schemas import CodeSnapshotOut
from core.models import CodeSnapshot
from core.settings import Settings
from core.tenants.schemas import Principal, Role

router = APIRouter(prefix="/v1/code", tags=["code"], route_class=UnitOfWorkRoute)
Digest = Annotated[
    str, Path(min_length=71, max_length=71, description="sha256:<64 lower-case hex>")
]
ARCHIVE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.head("/{digest}", responses={404: {"description": "not in this organisation's store"}})
def has_snapshot(digest: Digest, caller: Caller, session: SessionDep) -> Response:
    """200 when the org has this snapshot (its size in `X-Snapshot-Size`), else 404."""
    row = snapshots.get(session, caller, digest)
    return Response(status_code=200, headers={"X-Snapshot-Size": str(row.size_bytes)})


@router.get("/{digest}", response_model=CodeSnapshotOut)
def get_snapshot(digest: Digest, caller: Caller, session: SessionDep) -> CodeSnapshotOut:
    return CodeSnapshotOut.model_validate(snapshots.get(session, caller, digest))


@router.put(
    "/{digest}",
    status_code=status.HTTP_201_CREATED,
    response_model=CodeSnapshotOut,
    responses={200: {"model": CodeSnapshotOut, "description": "the org already had it"}},
    openapi_extra=ARCHIVE_BODY,
)
async def put_snapshot(
    digest: Digest,
    request: Request,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> CodeSnapshotOut:
    """Upload an archive whose sha256 is `digest` → 201; 200 when the org already has it
    (the body is then not read); 422 `digest_mismatch` when the bytes are not the digest's."""
    caller.require(Role.MEMBER)  # before anything, even an answer that the org has it
    existing = await run_in_threadpool(snapshots.find, session, caller.org_id, digest)
    if existing is not None:
        response.status_code = status.HTTP_200_OK
        return CodeSnapshotOut.model_validate(existing)
    body = _BodyReader(request.stream())
    row, created = await run_in_threadpool(_upload, session, caller, settings, digest, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return CodeSnapshotOut.model_validate(row)


def _upload(
    session: Session, caller: Principal, settings: Settings, digest: str, body: _BodyReader
) -> tuple[CodeSnapshot, bool]:
    return snapshots.upload(session, caller, settings, digest, body)  # type: ignore[arg-type]


class _BodyReader:
    """The request body as a blocking, read-once file, for code running in a worker thread."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        # S3 uploads read from threads of their own, which only this token leads back to the loop.
        self._loop = anyio.lowlevel.current_token()
        self._buffer = bytearray()
        self._done = False

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buffer) < n):
            chunk = anyio.from_thread.run(self._next, token=self._loop)
            if chunk is None:
                self._done = True
            else:
                self._buffer += chunk
        size = len(self._buffer) if n < 0 else min(n, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def _next(self) -> bytes | None:
        return await anext(self._chunks, None)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

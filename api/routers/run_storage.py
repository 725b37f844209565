"""`/v1/runs/{id}/storage`: a run's way to its own objects, with its run token.

Runs hold no storage credential. They presign each object operation here (URLs that expire in
`run_presigned_url_seconds`), and list folders through the API, which lists with its own
credentials. The run is looked up (and that transaction ended) before any storage I/O.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from api.deps import RunCaller, SessionDep, SettingsDep
from api.routers.runs import RunId
from api.routing import UnitOfWorkRoute
from core.models import utcnow
from core.run_storage import service
from core.run_storage.schemas import (
    MAX_KEY_CHARS,
    MultipartComplete,
    MultipartOut,
    MultipartStart,
    PresignOut,
    PresignRequest,
    StorageListing,
)

router = APIRouter(prefix="/v1/runs", tags=["run storage"], route_class=UnitOfWorkRoute)


@router.post("/{run_id}/storage/presign", response_model=PresignOut)
def presign_run_storage(
    run_id: RunId,
    body: PresignRequest,
    caller: RunCaller,
    session: SessionDep,
    settings: SettingsDep,
) -> PresignOut:
    """Short-lived URLs for GET, PUT or DELETE of single objects of the run's own storage:
    `checkpoints/<path>` (read-write) and `datasets/<pinned name>/<path>` (read-only). Run
    token only; any key outside those is refused with 403, and on local storage (where the
    run uses its `file://` paths) with 409 `local_storage`."""
    storage = service.run_storage(session, caller, settings, run_id)
    session.commit()
    return service.presign(storage, settings, body, utcnow())


@router.get("/{run_id}/storage/objects", response_model=StorageListing)
def list_run_storage(
    run_id: RunId,
    caller: RunCaller,
    session: SessionDep,
    settings: SettingsDep,
    prefix: Annotated[
        str, Query(min_length=1, max_length=MAX_KEY_CHARS, description="a folder, ending in /")
    ] = service.CHECKPOINTS,
    delimiter: Annotated[
        Literal["/"] | None, Query(description="`/`: group deeper objects into `prefixes`")
    ] = None,
) -> StorageListing:
    """The objects under a folder of the run's storage, listed by the API (run token only)."""
    storage = service.run_storage(session, caller, settings, run_id)
    session.commit()  # the storage listing comes next, outside any transaction
    return service.listing(storage, prefix, delimiter)


@router.post(
    "/{run_id}/storage/multipart", status_code=status.HTTP_201_CREATED, response_model=MultipartOut
)
def start_run_storage_multipart(
    run_id: RunId,
    body: MultipartStart,
    caller: RunCaller,
    session: SessionDep,
    settings: SettingsDep,
) -> MultipartOut:
    """Open a multipart upload of one `checkpoints/...` object (files above 5 GiB must use one;
    S3 storage only). Presign its parts with `PUT_PART`, then complete it."""
    storage = service.run_storage(session, caller, settings, run_id)
    session.commit()  # S3 comes next, outside any transaction
    return service.start_multipart(storage, body.key)


@router.post("/{run_id}/storage/multipart/complete", status_code=status.HTTP_204_NO_CONTENT)
def complete_run_storage_multipart(
    run_id: RunId,
    body: MultipartComplete,
    caller: RunCaller,
    session: SessionDep,
    settings: SettingsDep,
) -> None:
    """Join the parts that arrived (1..n, none missing: else 422 naming them) into the object."""
    storage = service.run_storage(session, caller, settings, run_id)
    session.commit()  # S3 comes next, outside any transaction
    service.complete_multipart(storage, body.key, body.upload_id)

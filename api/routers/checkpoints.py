"""`/v1/runs/{id}/checkpoints`: register a committed checkpoint, list them, download their files.

Registering reads the step's COMMIT marker (and re-hashes its files) from storage between two
transactions: the run is looked up (and the auth transaction ended) first, so no connection is
held during storage I/O.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from fastapi.responses import StreamingResponse

from api.deps import RunCaller, SessionDep, SettingsDep
from api.routers.runs import RunId
from api.routing import UnitOfWorkRoute
from core.checkpoints import service
from core.checkpoints.schemas import CheckpointIn, CheckpointOut

router = APIRouter(prefix="/v1/runs", tags=["checkpoints"], route_class=UnitOfWorkRoute)
FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "The file's bytes", "content": {"application/octet-stream": {}}}
}


@router.post(
    "/{run_id}/checkpoints", status_code=status.HTTP_201_CREATED, response_model=CheckpointOut
)
def register_checkpoint(
    run_id: RunId,
    body: CheckpointIn,
    caller: RunCaller,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> CheckpointOut:
    """Record a step whose COMMIT marker is written; 200 when that step was registered before."""
    run = service.run_for_registration(session, caller, run_id)
    session.commit()  # the storage read comes next, outside any transaction
    marker = service.read_commit(settings, run, body)
    observed = service.hash_stored_files(settings, run, body)
    registered = service.register(session, caller, run_id, body, marker, observed)
    if not registered.created:
        response.status_code = status.HTTP_200_OK
    store = service.location(settings, run.org_id, run.id)
    return service.describe(registered.checkpoint, store, settings)


@router.get("/{run_id}/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(
    run_id: RunId, caller: RunCaller, session: SessionDep, settings: SettingsDep
) -> list[CheckpointOut]:
    """Newest step first, each with download URLs (presigned on S3, API routes otherwise); a
    checkpoint that the run's retention (`keep_last`) deleted is no longer listed."""
    run, rows = service.registered(session, caller, run_id)
    session.commit()  # the storage listing comes next, outside any transaction
    return service.still_stored(run, rows, settings)


@router.get(
    "/{run_id}/checkpoints/{step}/files/{file_path:path}",
    response_class=StreamingResponse,
    responses=FILE_RESPONSES,
)
def download_checkpoint_file(
    run_id: RunId,
    step: Annotated[int, Path(ge=0, le=2**62)],
    file_path: Annotated[str, Path(min_length=1, max_length=1024)],
    caller: RunCaller,
    session: SessionDep,
    settings: SettingsDep,
) -> StreamingResponse:
    """One file of a registered checkpoint (or its `COMMIT` marker)."""
    chunks = service.open_file(session, caller, settings, run_id, step, file_path)
    return StreamingResponse(chunks, media_type="application/octet-stream")

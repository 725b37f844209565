"""`/v1/runs/{id}/outputs`: the files a run's `outputs` globs matched when each attempt ended."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from api.deps import Caller, SessionDep, SettingsDep
from api.routers.runs import RunId
from api.routing import UnitOfWorkRoute
from core.outputs import service
from core.outputs.schemas import OutputList

router = APIRouter(prefix="/v1/runs", tags=["outputs"], route_class=UnitOfWorkRoute)
FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "The file's bytes", "content": {"application/octet-stream": {}}}
}


@router.get("/{run_id}/outputs", response_model=OutputList)
def list_outputs(
    run_id: RunId,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    attempt: Annotated[int | None, Query(ge=1, description="one attempt's; default all")] = None,
) -> OutputList:
    """Every attempt's outputs (oldest attempt first, by path), with size, sha256 and a
    download URL (presigned on S3, this API's file route otherwise)."""
    org_id, rows = service.listed(session, caller, run_id, attempt)
    session.commit()  # presigning comes next, outside any transaction
    return service.describe(settings, org_id, run_id, rows)


@router.get(
    "/{run_id}/outputs/{attempt}/files/{file_path:path}",
    response_class=StreamingResponse,
    responses=FILE_RESPONSES,
)
def download_output(
    run_id: RunId,
    attempt: Annotated[int, Path(ge=1)],
    file_path: Annotated[str, Path(min_length=1, max_length=1024)],
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
) -> StreamingResponse:
    """One output file of one attempt."""
    chunks = service.open_file(session, caller, settings, run_id, attempt, file_path)
    return StreamingResponse(chunks, media_type="application/octet-stream")

"""`/v1/datasets`: datasets, their immutable versions (uploaded or registered), manifests, files.

Adding a version: the dataset is looked up and that transaction ended, then the files are
streamed into storage (or an `s3://` source is read) and hashed with no transaction open, then a
short transaction records the version — or finds one with the same digest, and the duplicate
upload is removed after the commit.
"""

from __future__ import annotations

from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import Caller, RunCaller, SessionDep, SettingsDep
from api.routing import UnitOfWorkRoute
from core.datasets import presigned, service, sources, uploads
from core.datasets.schemas import (
    DatasetCreate,
    DatasetList,
    DatasetOut,
    DatasetVersionOut,
    Manifest,
    SourceRegistration,
    UploadCreate,
    UploadOut,
)
from core.errors import FieldError, InvalidInput
from core.settings import Settings
from core.tenants.schemas import Principal, Role

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], route_class=UnitOfWorkRoute)
DatasetName = Annotated[str, Path(min_length=1, max_length=63, description="a dataset name")]
UploadId = Annotated[str, Path(min_length=1, max_length=64, description="an upload id, `upl_...`")]
VersionRef = Annotated[
    str, Path(min_length=1, max_length=71, description="a version number or `sha256:<hex>`")
]
MAX_UPLOAD_FILES = 100_000
VERSION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                        }
                    },
                    "required": ["files"],
                }
            },
            "application/json": {"schema": SourceRegistration.model_json_schema()},
        },
    }
}

# A push of content the dataset already holds answers that version with 200 (not 201).
KNOWN_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"model": DatasetVersionOut, "description": "the existing version with this content"}
}


# Datasets are addressed by name: say so to clients that follow links (and to schemathesis,
# which would otherwise guess the `id`).
BY_NAME = {"dataset": "$response.body#/name"}
DATASET_LINKS: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "the new dataset",
        "links": {
            operation: {"operationId": operation, "parameters": BY_NAME}
            for operation in ("get_dataset", "add_dataset_version", "start_presigned_upload")
        },
    }
}


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=DatasetOut, responses=DATASET_LINKS
)
def create_dataset(body: DatasetCreate, caller: Caller, session: SessionDep) -> DatasetOut:
    dataset = service.create_dataset(session, caller, body)
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        created_at=dataset.created_at,
    )


@router.get("", response_model=DatasetList)
def list_datasets(caller: Caller, session: SessionDep) -> DatasetList:
    return service.list_datasets(session, caller)


@router.get("/{dataset}", response_model=DatasetOut)
def get_dataset(dataset: DatasetName, caller: RunCaller, session: SessionDep) -> DatasetOut:
    """A dataset with its versions; a run token reads only datasets its run pinned."""
    return service.describe(session, caller, dataset)


@router.post(
    "/{dataset}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetVersionOut,
    responses=KNOWN_CONTENT,
    openapi_extra=VERSION_BODY,
)
async def add_dataset_version(
    dataset: DatasetName,
    request: Request,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> DatasetVersionOut:
    """Upload files (multipart, parts named `files`, filename = path) or `{"source": "s3://..."}`.

    201 with a new version; 200 with the existing one when the content's digest is known.
    """
    dataset_id = await run_in_threadpool(_dataset_for_upload, session, caller, dataset)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=MAX_UPLOAD_FILES)
        parts = [
            (f.filename or "", f.file) for f in form.getlist("files") if isinstance(f, UploadFile)
        ]
        try:
            staged = await run_in_threadpool(_upload, settings, caller, dataset_id, parts)
        finally:
            await form.close()
    else:
        source = _source(await request.body())
        org_keys = await run_in_threadpool(_org_keys, session, caller)
        staged = await run_in_threadpool(uploads.read_source, settings, org_keys, source.source)
    added = await run_in_threadpool(_record_version, session, caller, settings, dataset, staged)
    if not added.created:
        response.status_code = status.HTTP_200_OK
    return service.version_out(dataset, added.version)


@router.post("/{dataset}/uploads", status_code=status.HTTP_201_CREATED, response_model=UploadOut)
def start_presigned_upload(
    dataset: DatasetName,
    body: UploadCreate,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
) -> UploadOut:
    """Declare the files of a new version; PUT each to its presigned URL, or each byte range
    of a file above the multipart threshold to its part's URL (S3 storage only), then
    `POST .../uploads/{id}/complete`. Big datasets never pass through the API."""
    dataset_id = _dataset_for_upload(session, caller, dataset)
    planned = presigned.plan(settings, caller.org_id, dataset_id, body)
    return UploadOut(
        id=planned.upload_id, dataset=dataset, expires_at=planned.expires_at, files=planned.targets
    )


@router.post(
    "/{dataset}/uploads/{upload_id}/complete",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetVersionOut,
    responses=KNOWN_CONTENT,
)
def complete_presigned_upload(
    dataset: DatasetName,
    upload_id: UploadId,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> DatasetVersionOut:
    """Hash what was uploaded, check it against what was declared, and record the version
    (201), or answer the existing version with the same content (200)."""
    dataset_id = _dataset_for_upload(session, caller, dataset)
    staged = presigned.stage(settings, caller.org_id, dataset_id, upload_id)
    added = _record_version(session, caller, settings, dataset, staged)
    presigned.forget(settings, caller.org_id, upload_id)
    if not added.created:
        response.status_code = status.HTTP_200_OK
    return service.version_out(dataset, added.version)


def _source(body: bytes) -> SourceRegistration:
    try:
        return SourceRegistration.model_validate_json(body)
    except ValidationError as exc:
        errors = [FieldError("/" + "/".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
        raise InvalidInput(
            'Send files as multipart/form-data, or JSON {"source": "s3://bucket/prefix/"}.', errors
        ) from None


def _dataset_for_upload(session: Session, caller: Principal, name: str) -> str:
    caller.require(Role.MEMBER)
    dataset_id = service.get_dataset(session, caller, name).id
    session.commit()  # storage I/O comes next: no transaction stays open across it
    return dataset_id


def _org_keys(session: Session, caller: Principal) -> tuple[str, ...]:
    keys = sources.org_keys(session, caller.org_id)
    session.commit()  # the source is read next: no transaction stays open across it
    return keys


def _upload(
    settings: Settings, caller: Principal, dataset_id: str, parts: list[tuple[str, BinaryIO]]
) -> uploads.StagedFiles:
    if not parts:
        raise InvalidInput("Upload at least one file as a multipart part named `files`.")
    return uploads.upload_files(settings, caller.org_id, dataset_id, parts)


def _record_version(
    session: Session,
    caller: Principal,
    settings: Settings,
    name: str,
    staged: uploads.StagedFiles,
) -> service.AddedVersion:
    added = service.add_version(session, caller, name, staged)
    session.commit()
    if not added.created:
        uploads.discard(settings, caller.org_id, staged)  # same content: keep the first copy
    return added


@router.get("/{dataset}/versions/{version}/manifest", response_model=Manifest)
def get_manifest(
    dataset: DatasetName,
    version: VersionRef,
    caller: RunCaller,
    session: SessionDep,
    settings: SettingsDep,
) -> Manifest:
    """Every file with its size, sha256 and a download URL; `version` is a number or digest."""
    return service.manifest(session, caller, settings, dataset, version)


@router.get(
    "/{dataset}/versions/{version}/files/{file_path:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_dataset_file(
    dataset: DatasetName,
    version: VersionRef,
    file_path: Annotated[str, Path(min_length=1, max_length=1024)],
    caller: RunCaller,
    session: SessionDep,
    settings: SettingsDep,
) -> StreamingResponse:
    entry, chunks = service.open_file(session, caller, settings, dataset, version, file_path)
    headers = {"Content-Length": str(entry.size), "X-Content-SHA256": entry.sha256}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)

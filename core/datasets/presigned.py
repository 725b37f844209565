"""Presigned dataset uploads: the files go from the client straight to S3, never through the API.

`plan` checks the declared files, writes the upload's manifest (what was promised: path, size,
optional sha256, the dataset, the deadline) into the org's store and answers one presigned PUT
URL per file under `datasets/<dataset id>/<upload id>/`, the same layout as a streamed upload.
`stage` then reads back what arrived, hashes it and checks it against the manifest: every file
there, of its size and digest, nothing else. The version itself is made by the same code as a
streamed upload's, so the same content gets the same digest. No table holds an upload: its
manifest lives beside its files, under the org's prefix, so another org's id is simply absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.datasets.schemas import (
    FileEntry,
    PlannedFile,
    UploadCreate,
    UploadManifest,
    check_path,
)
from core.datasets.uploads import StagedFiles
from core.errors import Conflict, FieldError, InvalidInput, NotFound
from core.ids import new_id
from core.models import utcnow
from core.settings import Settings
from core.storage.backends import org_store
from core.storage.base import ObjectNotFound, ObjectStore, sha256_of_chunks

MANIFEST = "uploads/{upload_id}.json"


@dataclass(frozen=True)
class Plan:
    upload_id: str
    expires_at: datetime
    urls: list[tuple[str, str]]  # (path, presigned PUT URL)


def plan(settings: Settings, org_id: str, dataset_id: str, body: UploadCreate) -> Plan:
    store = org_store(settings, org_id)
    paths = [check_path(f.path) for f in body.files]
    if len(set(paths)) != len(paths):
        raise InvalidInput("Each file path may appear only once in a version.")
    if sum(f.size for f in body.files) > settings.max_upload_bytes:
        raise InvalidInput(
            f"The files add up to more than TRAINPORT_MAX_UPLOAD_BYTES "
            f"({settings.max_upload_bytes} bytes).",
            [FieldError("/files", "too large in total")],
        )
    upload_id = new_id("upl")
    folder = f"datasets/{dataset_id}/{upload_id}/"
    seconds = settings.presigned_url_seconds
    urls = [(f.path, store.presigned_put_url(folder + f.path, seconds)) for f in body.files]
    if any(url is None for _, url in urls):
        raise Conflict(
            "Presigned uploads need S3 object storage (TRAINPORT_STORAGE_BACKEND=s3); here, "
            "stream the files as multipart/form-data to POST /v1/datasets/{name}/versions.",
            "presigned_uploads_unavailable",
        )
    expires_at = utcnow() + timedelta(seconds=seconds)
    manifest = UploadManifest(
        dataset_id=dataset_id, folder=folder, expires_at=expires_at, files=body.files
    )
    store.put_bytes(MANIFEST.format(upload_id=upload_id), manifest.model_dump_json().encode())
    return Plan(upload_id, expires_at, [(path, str(url)) for path, url in urls])


def stage(settings: Settings, org_id: str, dataset_id: str, upload_id: str) -> StagedFiles:
    """Hash what arrived for `upload_id` and check it against the manifest (storage I/O only)."""
    store = org_store(settings, org_id)
    manifest = _manifest(store, dataset_id, upload_id)
    folder = store.scoped(manifest.folder)
    arrived = {item.key: item.size for item in folder.list("")}
    files = [_check(folder, declared, arrived) for declared in manifest.files]
    extra = sorted(set(arrived) - {f.path for f in files})
    if extra:
        raise InvalidInput(
            f"{extra[0]} was uploaded but not declared in upload {upload_id}.",
            [FieldError("/files", f"undeclared file {extra[0]}")],
        )
    return StagedFiles(files, folder.uri(""), manifest.folder)


def _manifest(store: ObjectStore, dataset_id: str, upload_id: str) -> UploadManifest:
    missing = NotFound(f"Upload {upload_id} of this dataset was not found.")
    if not upload_id.startswith("upl_") or not upload_id[4:].isalnum():
        raise missing
    try:
        raw = store.read_bytes(MANIFEST.format(upload_id=upload_id))
    except ObjectNotFound:
        raise missing from None
    manifest = UploadManifest.model_validate_json(raw)
    if manifest.dataset_id != dataset_id:
        raise missing
    return manifest


def _check(folder: ObjectStore, declared: PlannedFile, arrived: dict[str, int]) -> FileEntry:
    path, size = declared.path, declared.size
    if path not in arrived:
        raise InvalidInput(
            f"{path} has not been uploaded; PUT it to its URL, then complete the upload.",
            [FieldError("/files", f"missing {path}")],
        )
    if arrived[path] != size:
        raise InvalidInput(
            f"{path} has {arrived[path]} bytes, not the {size} declared.",
            [FieldError("/files", f"size of {path}")],
        )
    digest, _ = sha256_of_chunks(folder.iter_chunks(path))
    if declared.sha256 not in (None, digest):
        raise InvalidInput(
            f"{path} does not match the sha256 declared for it.",
            [FieldError("/files", f"sha256 of {path}")],
        )
    return FileEntry(path=path, size=size, sha256=digest)


def forget(settings: Settings, org_id: str, upload_id: str) -> None:
    """Drop the manifest once the version exists (the files stay: they are the version)."""
    store = org_store(settings, org_id)
    store.delete_prefix(MANIFEST.format(upload_id=upload_id))

"""Presigned dataset uploads: the files go from the client straight to S3, never through the API.

`plan` checks the declared files, writes the upload's manifest (what was promised: path, size,
optional sha256, the dataset, the deadline) into the org's store and answers one presigned PUT
URL per file under `datasets/<dataset id>/<upload id>/`, the same layout as a streamed upload.
A file above `s3_multipart_threshold_bytes` gets an S3 multipart upload instead and one URL per
byte range; `stage` joins its parts (listing them itself, so clients need not report ETags).
`stage` then reads back what arrived, hashes it and checks it against the manifest: every file
there, of its size and digest, nothing else. The version itself is made by the same code as a
streamed upload's, so the same content gets the same digest. No table holds an upload: its
manifest lives beside its files, under the org's prefix, so another org's id is simply absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.datasets.schemas import (
    MAX_PARTS,
    FileEntry,
    MultipartFile,
    PlannedFile,
    UploadCreate,
    UploadManifest,
    UploadPart,
    UploadTarget,
    check_path,
)
from core.datasets.uploads import StagedFiles
from core.errors import Conflict, FieldError, InvalidInput, NotFound
from core.ids import new_id
from core.models import utcnow
from core.settings import Settings
from core.storage.backends import org_store
from core.storage.base import ObjectNotFound, ObjectStore, PayloadTooLarge, sha256_of_chunks
from core.storage.s3 import S3ObjectStore

MANIFEST = "uploads/{upload_id}.json"
MIB = 2**20


@dataclass(frozen=True)
class Plan:
    upload_id: str
    expires_at: datetime
    targets: list[UploadTarget]


def plan(settings: Settings, org_id: str, dataset_id: str, body: UploadCreate) -> Plan:
    _check_declaration(settings, body)
    store = _direct_store(settings, org_id)
    upload_id = new_id("upl")
    folder = f"datasets/{dataset_id}/{upload_id}/"
    seconds = settings.presigned_url_seconds
    multipart = {
        f.path: MultipartFile(
            upload_id=store.start_multipart(folder + f.path), part_bytes=_part_bytes(settings, f)
        )
        for f in body.files
        if f.size > settings.s3_multipart_threshold_bytes
    }
    targets = [_target(store, folder, f, multipart.get(f.path), seconds) for f in body.files]
    expires_at = utcnow() + timedelta(seconds=seconds)
    manifest = UploadManifest(
        dataset_id=dataset_id,
        folder=folder,
        expires_at=expires_at,
        files=body.files,
        multipart=multipart,
    )
    store.put_bytes(MANIFEST.format(upload_id=upload_id), manifest.model_dump_json().encode())
    return Plan(upload_id, expires_at, targets)


def _check_declaration(settings: Settings, body: UploadCreate) -> None:
    paths = [check_path(f.path) for f in body.files]
    if len(set(paths)) != len(paths):
        raise InvalidInput("Each file path may appear only once in a version.")
    if sum(f.size for f in body.files) > settings.max_upload_bytes:
        raise PayloadTooLarge(settings.max_upload_bytes)  # what an upload this large would meet


def _direct_store(settings: Settings, org_id: str) -> S3ObjectStore:
    store = org_store(settings, org_id)
    if not isinstance(store, S3ObjectStore):
        raise Conflict(
            "Presigned uploads need S3 object storage (TRAINPORT_STORAGE_BACKEND=s3); here, "
            "stream the files as multipart/form-data to POST /v1/datasets/{name}/versions.",
            "presigned_uploads_unavailable",
        )
    return store


def _part_bytes(settings: Settings, declared: PlannedFile) -> int:
    """The configured part size, grown in whole MiB where a file would need over 10,000."""
    smallest = -(-declared.size // MAX_PARTS)
    return max(settings.s3_multipart_chunk_bytes, -(-smallest // MIB) * MIB)


def _target(
    store: S3ObjectStore,
    folder: str,
    declared: PlannedFile,
    multipart: MultipartFile | None,
    seconds: int,
) -> UploadTarget:
    key = folder + declared.path
    if multipart is None:
        return UploadTarget(path=declared.path, url=store.presigned_put_url(key, seconds))
    parts = [
        UploadPart(
            part_number=number,
            offset=offset,
            size=size,
            url=store.presigned_part_url(key, multipart.upload_id, number, seconds),
        )
        for number, offset, size in _layout(declared.size, multipart.part_bytes)
    ]
    return UploadTarget(path=declared.path, url=None, parts=parts)


def _layout(file_bytes: int, part_bytes: int) -> list[tuple[int, int, int]]:
    """(part number, offset, size) of each part: what `plan` promises and `stage` checks."""
    offsets = range(0, file_bytes, part_bytes)
    return [(n, at, min(part_bytes, file_bytes - at)) for n, at in enumerate(offsets, start=1)]


def stage(settings: Settings, org_id: str, dataset_id: str, upload_id: str) -> StagedFiles:
    """Hash what arrived for `upload_id` and check it against the manifest (storage I/O only)."""
    store = _direct_store(settings, org_id)
    manifest = _manifest(store, dataset_id, upload_id)
    folder = store.scoped(manifest.folder)
    arrived = {item.key: item.size for item in folder.list("")}
    joined = [
        _join(store, manifest, declared)
        for declared in manifest.files
        if declared.path in manifest.multipart and declared.path not in arrived
    ]
    arrived.update(joined)
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


def _join(store: S3ObjectStore, manifest: UploadManifest, declared: PlannedFile) -> tuple[str, int]:
    """Join a multipart file's parts once all have arrived at the sizes promised."""
    path, multipart = declared.path, manifest.multipart[declared.path]
    key = manifest.folder + path
    parts = store.uploaded_parts(key, multipart.upload_id)
    if parts is None:
        raise InvalidInput(
            f"The multipart upload of {path} is gone (aborted or expired); start a new upload.",
            [FieldError("/files", f"missing {path}")],
        )
    layout = _layout(declared.size, multipart.part_bytes)
    count = len(layout)
    for number, _, expected in layout:
        _check_part(path, number, count, expected, parts.get(number))
    if len(parts) != count:
        raise InvalidInput(
            f"{path} has parts beyond the {count} planned; start a new upload.",
            [FieldError("/files", f"parts of {path}")],
        )
    store.complete_multipart(key, multipart.upload_id, [parts[n][1] for n in range(1, count + 1)])
    return path, declared.size


def _check_part(
    path: str, number: int, count: int, expected: int, arrived: tuple[int, str] | None
) -> None:
    if arrived is None:
        raise InvalidInput(
            f"Part {number} of {count} of {path} has not been uploaded; PUT it to its URL, "
            "then complete the upload.",
            [FieldError("/files", f"missing part {number} of {path}")],
        )
    if arrived[0] != expected:
        raise InvalidInput(
            f"Part {number} of {path} has {arrived[0]} bytes, not the {expected} planned.",
            [FieldError("/files", f"size of part {number} of {path}")],
        )


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

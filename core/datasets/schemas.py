"""Dataset documents: creation, versions, manifests, and the content digest's definition."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from core.errors import FieldError, InvalidInput
from core.storable import INTEGER
from core.tenants.schemas import Slug, StorableInput

# S3's bucket naming rules: 3-63 lower-case letters, digits, dots and hyphens.
BUCKET_PATTERN = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
# What core/datasets/sources.canonical accepts, as one pattern for /openapi.json: a path
# segment is neither empty, `.` nor `..`, and holds no `/`, `?`, `#`, backslash or control
# character (core/storage/base.check_key).
_SEGMENT = (
    r"(?:[^/?#\\.\x00-\x1f][^/?#\\\x00-\x1f]*"
    r"|\.[^/?#\\.\x00-\x1f][^/?#\\\x00-\x1f]*"
    r"|\.\.[^/?#\\\x00-\x1f]+)"
)
CANONICAL_SOURCE = rf"^s3://{BUCKET_PATTERN}(?:/{_SEGMENT})*/?$"

MAX_PATH_CHARS = 1024
# check_path as one pattern for /openapi.json: `/`-separated segments, none empty, `.` or `..`,
# without a backslash or control character.
_FILE_SEGMENT = (
    r"(?:[^/\\\x00-\x1f\x7f.][^/\\\x00-\x1f\x7f]*"
    r"|\.[^/\\\x00-\x1f\x7f.][^/\\\x00-\x1f\x7f]*"
    r"|\.\.[^/\\\x00-\x1f\x7f]+)"
)
FILE_PATH = rf"^{_FILE_SEGMENT}(?:/{_FILE_SEGMENT})*$"
PATH_SCHEMA: JsonDict = {"pattern": FILE_PATH}
DIGEST_PREFIX = "sha256:"


class FileEntry(BaseModel):
    """One file of a dataset version or checkpoint: its relative path, size and sha256 (hex)."""

    path: str = Field(min_length=1, max_length=MAX_PATH_CHARS, json_schema_extra=PATH_SCHEMA)
    size: Annotated[int, Field(ge=0), *INTEGER]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


def check_path(path: str) -> str:
    """A relative, `/`-separated file path: no empty, `.` or `..` segment, no control chars."""
    segments = path.split("/")
    if (
        not path
        or len(path) > MAX_PATH_CHARS
        or path.startswith("/")
        or "\\" in path
        or any(segment in {"", ".", ".."} for segment in segments)
        or any(ord(c) < 32 or c == "\x7f" for c in path)
    ):
        raise InvalidInput(
            f"{path!r} is not a valid relative file path.",
            [FieldError("/files", "relative, '/'-separated, without '.', '..' or empty parts")],
        )
    return path


def content_digest(files: Iterable[FileEntry]) -> str:
    """`sha256:` + sha256 over "<path> <sha256 hex>\\n" per file, sorted by path."""
    digest = hashlib.sha256()
    for entry in sorted(files, key=lambda f: f.path):
        digest.update(f"{entry.path} {entry.sha256}\n".encode())
    return DIGEST_PREFIX + digest.hexdigest()


class DatasetCreate(StorableInput):
    name: str = Slug
    description: str = Field(default="", max_length=1000)


class SourceRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=6,
        max_length=1024,
        description="s3://bucket/prefix/, in canonical form",
        json_schema_extra={"pattern": CANONICAL_SOURCE},
    )


class DatasetVersionOut(BaseModel):
    dataset: str
    version: int
    digest: str
    file_count: int
    size_bytes: int
    uri: str
    source: str | None
    created_at: datetime


class DatasetOut(BaseModel):
    id: str
    object: str = "dataset"
    name: str
    description: str
    created_at: datetime
    versions: list[DatasetVersionOut] = Field(default_factory=list)


class DatasetList(BaseModel):
    object: str = "list"
    data: list[DatasetOut]


class ManifestFile(FileEntry):
    url: str = Field(description="a presigned URL (S3) or an API path (local storage)")


class Manifest(BaseModel):
    dataset: str
    version: int
    digest: str
    files: list[ManifestFile]


MAX_PRESIGNED_FILES = 10_000
MAX_OBJECT_BYTES = 5 * 2**40  # S3's limit for one object (5 TiB, in up to 10,000 parts)
MAX_PARTS = 10_000


class PlannedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=MAX_PATH_CHARS, json_schema_extra=PATH_SCHEMA)
    size: Annotated[int, Field(ge=0, le=MAX_OBJECT_BYTES), *INTEGER] = Field(
        description="bytes; at most 5 TiB per file"
    )
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class UploadCreate(BaseModel):
    """The files a client will PUT straight to the object store."""

    model_config = ConfigDict(extra="forbid")

    files: list[PlannedFile] = Field(min_length=1, max_length=MAX_PRESIGNED_FILES)


class UploadPart(BaseModel):
    part_number: int
    offset: int = Field(description="where the part starts in the file")
    size: int
    url: str


class UploadTarget(BaseModel):
    path: str
    method: str = "PUT"
    url: str | None = Field(description="PUT the whole file here; null when it goes in `parts`")
    parts: list[UploadPart] | None = Field(
        default=None,
        description="files above the multipart threshold: PUT each byte range to its own URL",
    )


class UploadOut(BaseModel):
    object: str = "dataset_upload"
    id: str
    dataset: str
    expires_at: datetime
    files: list[UploadTarget]


class MultipartFile(BaseModel):
    """One file sent in parts: the store's multipart upload id and the part size promised."""

    upload_id: str
    part_bytes: int


class UploadManifest(BaseModel):
    """What a presigned upload promised, kept beside its files until it completes."""

    dataset_id: str
    folder: str
    expires_at: datetime
    files: list[PlannedFile]
    multipart: dict[str, MultipartFile] = Field(default_factory=dict)  # by path

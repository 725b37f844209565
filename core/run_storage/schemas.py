"""Bodies of the run storage routes: presign requests and answers, listings.

Keys are relative to the run's storage root, which has two parts: `checkpoints/...` (the run's
checkpoint location, read-write) and `datasets/<name>/<path>` (a dataset version pinned for
the run, read-only).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.storable import INTEGER

MAX_OPERATIONS = 1000
MAX_KEY_CHARS = 1024
MAX_PARTS = 10_000  # S3's limit of parts per multipart upload


class StorageMethod(StrEnum):
    GET = "GET"
    PUT = "PUT"
    DELETE = "DELETE"
    PUT_PART = "PUT_PART"  # one part of a multipart upload (`upload_id`, `part_number`)


# The rule `_part_fields_with_put_part_only` enforces, stated for /openapi.json.
PART_FIELDS_RULE: dict[str, Any] = {
    "if": {"properties": {"method": {"const": "PUT_PART"}}, "required": ["method"]},
    "then": {
        "required": ["upload_id", "part_number"],
        "properties": {"upload_id": {"type": "string"}, "part_number": {"type": "integer"}},
    },
    "else": {"properties": {"upload_id": {"type": "null"}, "part_number": {"type": "null"}}},
}


class PresignOperation(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=PART_FIELDS_RULE)

    method: StorageMethod
    key: str = Field(
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="`checkpoints/<path>` or `datasets/<pinned name>/<path>`",
        examples=["checkpoints/step-0000000100/model.safetensors"],
    )
    upload_id: str | None = Field(
        default=None, max_length=1024, description="PUT_PART only: the multipart upload's id"
    )
    part_number: Annotated[int, Field(ge=1, le=MAX_PARTS), *INTEGER] | None = Field(
        default=None, description="PUT_PART only: 1, 2, ..."
    )

    @model_validator(mode="after")
    def _part_fields_with_put_part_only(self) -> PresignOperation:
        is_part = self.method is StorageMethod.PUT_PART
        given = [self.upload_id is not None, self.part_number is not None]
        if given != [is_part, is_part]:
            raise ValueError("PUT_PART needs upload_id and part_number; other methods take neither")
        return self


class PresignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operations: list[PresignOperation] = Field(min_length=1, max_length=MAX_OPERATIONS)


class PresignedOperation(BaseModel):
    method: StorageMethod
    key: str
    url: str = Field(description="Send the request here with no Authorization header")


class PresignOut(BaseModel):
    expires_at: datetime = Field(description="Every URL stops working at this time")
    operations: list[PresignedOperation] = Field(description="In the order asked")


class StoredObjectOut(BaseModel):
    key: str = Field(description="Relative to the run's storage root, e.g. `checkpoints/...`")
    size: int


class StorageListing(BaseModel):
    prefix: str
    objects: list[StoredObjectOut] = Field(description="Objects directly under the prefix")
    prefixes: list[str] = Field(
        description="With `delimiter=/`: the folders under the prefix, each ending in `/`"
    )


class MultipartStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=MAX_KEY_CHARS, description="`checkpoints/<path>`")


class MultipartOut(BaseModel):
    key: str
    upload_id: str = Field(description="Presign each part with PUT_PART and this id")


class MultipartComplete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=MAX_KEY_CHARS)
    upload_id: str = Field(min_length=1, max_length=1024)

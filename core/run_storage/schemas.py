"""Bodies of the run storage routes: presign requests and answers, listings.

Keys are relative to the run's storage root, which has two parts: `checkpoints/...` (the run's
checkpoint location, read-write) and `datasets/<name>/<path>` (a dataset version pinned for
the run, read-only).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

MAX_OPERATIONS = 1000
MAX_KEY_CHARS = 1024


class StorageMethod(StrEnum):
    GET = "GET"
    PUT = "PUT"
    DELETE = "DELETE"


class PresignOperation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: StorageMethod
    key: str = Field(
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="`checkpoints/<path>` or `datasets/<pinned name>/<path>`",
        examples=["checkpoints/step-0000000100/model.safetensors"],
    )


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

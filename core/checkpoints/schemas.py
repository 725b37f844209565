"""Checkpoint documents (docs/runtime-api.md, section 5): the registration and the listing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from core.datasets.schemas import FileEntry
from core.metrics.schemas import MAX_STEP
from core.storable import INTEGER

MAX_CHECKPOINT_FILES = 10_000
COMMIT_MARKER = "COMMIT"
MAX_COMMIT_BYTES = 16 * 2**20


def step_folder(step: int) -> str:
    return f"step-{step:010d}/"


class CheckpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: Annotated[int, Field(ge=0, le=MAX_STEP), *INTEGER]
    path: str = Field(min_length=1, max_length=255, description="`step-<step:010d>/`")
    files: list[FileEntry] = Field(max_length=MAX_CHECKPOINT_FILES)
    metrics: dict[str, StrictFloat] = Field(default_factory=dict, max_length=256)


class CommitDocument(BaseModel):
    """The `COMMIT` marker the runtime writes last into a checkpoint folder."""

    step: int
    files: list[FileEntry]
    time: StrictFloat | None = None


class CheckpointFile(FileEntry):
    url: str


class CheckpointOut(BaseModel):
    run_id: str
    step: int
    path: str
    attempt: int
    size_bytes: int
    created_at: datetime
    metrics: dict[str, Any]
    sha256: str = Field(description="sha256 of the COMMIT document")
    files: list[CheckpointFile]
    download_url: str = Field(description="URL of the largest file")
    provenance_url: str

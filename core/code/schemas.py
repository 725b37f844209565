"""What the code routes answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class CodeSnapshotOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    object: str = "code_snapshot"
    digest: str = Field(description="sha256:<hex> of the archive's bytes, computed by the API")
    size_bytes: int
    origin: str = Field(description="upload (a workdir) or git (a commit a worker packed)")
    git_url: str | None = None
    git_commit: str | None = None
    created_at: datetime

"""The outputs listing (`GET /v1/runs/{run_id}/outputs`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class OutputFile(BaseModel):
    attempt: int
    path: str = Field(description="relative to the run's working directory")
    size: int
    sha256: str
    created_at: datetime
    url: str = Field(description="download URL (presigned on S3, else this API's file route)")


class OutputList(BaseModel):
    object: str = "list"
    run_id: str
    data: list[OutputFile]

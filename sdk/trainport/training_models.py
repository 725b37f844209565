"""Response models for what runs produce and train on: metric series, checkpoints, provenance
records and datasets (docs/runtime-api.md). Like every model here they keep unknown fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from trainport.models import TrainportModel


class MetricSeries(TrainportModel):
    """One metric's points in step order (downsampled by the server for long runs)."""

    steps: list[int] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None


class Metrics(TrainportModel):
    """`client.runs.metrics(run)`: every requested series by name."""

    series: dict[str, MetricSeries] = Field(default_factory=dict)

    def __getitem__(self, name: str) -> MetricSeries:
        return self.series[name]

    def __contains__(self, name: object) -> bool:
        return name in self.series


class StoredFile(TrainportModel):
    """A file of a checkpoint or dataset version: relative path, size, sha256 and where to get
    it (a presigned URL, or an API path relative to the base URL)."""

    path: str
    size: int
    sha256: str
    url: str | None = None


class Checkpoint(TrainportModel):
    """A checkpoint the run registered (newest first in listings)."""

    run_id: str
    step: int
    path: str
    attempt: int | None = None
    size_bytes: int = 0
    created_at: datetime
    metrics: dict[str, Any] = Field(default_factory=dict)
    sha256: str = Field(default="", description="sha256 of the checkpoint's COMMIT document")
    files: list[StoredFile] = Field(default_factory=list)
    download_url: str | None = None
    provenance_url: str | None = None


class OutputFile(TrainportModel):
    """A file a run's `outputs` globs matched when one of its attempts ended."""

    attempt: int
    path: str
    size: int = 0
    sha256: str = ""
    created_at: datetime | None = None
    url: str = ""


class Provenance(TrainportModel):
    """The server-signed record of what a run was made from and where each attempt ran."""

    record: dict[str, Any]
    signature: str
    algorithm: str
    key_id: str

    @property
    def datasets(self) -> dict[str, Any]:
        value = self.record.get("datasets") or {}
        return value if isinstance(value, dict) else {}

    @property
    def attempts(self) -> list[dict[str, Any]]:
        value = self.record.get("attempts") or []
        return value if isinstance(value, list) else []


class Verdict(TrainportModel):
    """The answer of `/v1/provenance/verify`: valid, or why not."""

    valid: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.valid


class DatasetVersion(TrainportModel):
    """An immutable version: numbered per dataset, identified by its content digest."""

    dataset: str
    version: int
    digest: str
    file_count: int = 0
    size_bytes: int = 0
    uri: str | None = None
    source: str | None = None
    created_at: datetime

    @property
    def ref(self) -> str:
        """`name@version`, as a run spec's `data.datasets` takes it."""
        return f"{self.dataset}@{self.version}"


class Dataset(TrainportModel):
    id: str
    object: str = "dataset"
    name: str
    description: str = ""
    created_at: datetime
    versions: list[DatasetVersion] = Field(default_factory=list)

    @property
    def latest(self) -> DatasetVersion | None:
        return max(self.versions, key=lambda v: v.version, default=None)


class Manifest(TrainportModel):
    """Every file of one dataset version, with a URL to download it."""

    dataset: str | None = None
    version: int | None = None
    digest: str
    files: list[StoredFile] = Field(default_factory=list)

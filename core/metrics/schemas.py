"""Metric points in, series out, and the heartbeat body (docs/runtime-api.md, sections 3-4)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StringConstraints
from pydantic.config import JsonDict

from core.storable import INTEGER

MAX_POINTS_PER_REQUEST = 10_000
MAX_METRICS_BODY_BYTES = 8 * 2**20
MAX_STEP = 2**53  # exact as a double too, so JSON tools read the bound as written
METRIC_NAME_PATTERN = r"^[A-Za-z0-9_.\-/]+$"
MetricName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=METRIC_NAME_PATTERN)
]
# Stated for the keys of `values` too: pydantic's schema of a dict says nothing of its keys.
METRIC_NAME_SCHEMA: JsonDict = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "pattern": METRIC_NAME_PATTERN,
}
Step = Annotated[int, Field(ge=0, le=MAX_STEP), *INTEGER]


class MetricPointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: Step
    values: dict[MetricName, StrictFloat | None] = Field(
        min_length=1, max_length=64, json_schema_extra={"propertyNames": METRIC_NAME_SCHEMA}
    )
    time: StrictFloat | None = Field(
        default=None, description="epoch seconds; default: received at"
    )


class MetricBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: list[MetricPointIn] = Field(max_length=MAX_POINTS_PER_REQUEST)


class Accepted(BaseModel):
    accepted: int


class Series(BaseModel):
    steps: list[int]
    values: list[float]


class SeriesSet(BaseModel):
    series: dict[str, Series]


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: Step | None = None
    total_steps: Step | None = None
    resumed_from_step: Step | None = None

"""Metric points in, series out, and the heartbeat body (docs/runtime-api.md, sections 3-4)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StringConstraints

MAX_POINTS_PER_REQUEST = 10_000
MAX_METRICS_BODY_BYTES = 8 * 2**20
MAX_STEP = 2**62
MetricName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-/]+$")
]
Step = Annotated[StrictInt, Field(ge=0, le=MAX_STEP)]


class MetricPointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: Step
    values: dict[MetricName, StrictFloat | None] = Field(min_length=1, max_length=64)
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

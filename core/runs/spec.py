"""The run spec: the document a user submits, as YAML or JSON, validated strictly.

Unknown fields are rejected (a typo must not silently become a default) and every bound is
explicit, so absurd input is a 422 that points at the field rather than a problem later.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from core.runs.recipes import check_recipe
from core.storable import check_storable

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
QUANTITY = re.compile(r"^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE]\d{1,2})?$")
DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
RESERVED_ENV_PREFIXES = ("TRAINPORT_", "KUBERNETES_")
RESERVED_ENV_NAMES = frozenset(
    {"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NNODES"}
)
RESERVED_LABEL_PREFIX = "trainport.dev/"
MAX_DURATION_SECONDS = 30 * 24 * 3600
_SUFFIX_SCALE = {
    "": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


def _dns_label(value: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise ValueError(
            "must be a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def quantity_value(text: str) -> float:
    """The numeric value of a Kubernetes quantity such as `500m`, `4` or `16Gi`."""
    match = QUANTITY.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. '4', '500m', '16Gi')")
    number, suffix = float(match.group(1)), match.group(3) or ""
    if suffix[:1] in {"e", "E"}:
        return number * 10.0 ** int(suffix[1:])
    return number * _SUFFIX_SCALE[suffix]


def _quantity(limit: float, what: str) -> Any:
    def check(value: str | int | float) -> str:
        text = str(value)
        amount = quantity_value(text)
        if amount <= 0 or amount > limit:
            raise ValueError(f"{what} must be more than 0 and at most {limit:g}")
        return text

    return BeforeValidator(check)


def parse_duration(value: Any) -> int:
    """Seconds from `3600`, `"90m"`, `"12h"` or `"2d"`."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as '12h' or a number of seconds")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (match := DURATION.fullmatch(value.strip())):
        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    else:
        raise ValueError("must be a duration such as '12h', '90m', '30s' or a number of seconds")
    if not 0 < seconds <= MAX_DURATION_SECONDS:
        raise ValueError(
            f"must be more than 0 seconds and at most {MAX_DURATION_SECONDS // 86400}d"
        )
    return seconds


Name = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_dns_label)]
Duration = Annotated[int, BeforeValidator(parse_duration)]
Cpus = Annotated[str, _quantity(1024, "cpus")]
Memory = Annotated[str, _quantity(2.0**44, "memory")]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value)


class SecretRef(StrictModel):
    secret: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9_.-]+$")


class Compute(StrictModel):
    nodes: int = Field(default=1, ge=1, le=512)
    gpus_per_node: int = Field(default=0, ge=0, le=16)
    gpu_type: str | None = Field(
        default=None, max_length=63, pattern=r"^[A-Za-z0-9][-_.A-Za-z0-9]*$"
    )
    processes: int | None = Field(default=None, ge=1, le=64, description="ranks per node")
    cpus: Cpus | None = None
    memory: Memory | None = None


class Scheduling(StrictModel):
    priority: Priority = Priority.NORMAL
    max_duration: Duration | None = Field(
        default=None, description="Running time, '12h' or seconds (waiting to start not counted)"
    )
    max_pending: Duration | None = Field(
        default=None,
        description="How long the run may wait to start, '30m' or seconds: in the queue, and "
        "each attempt on its cluster (empty: the operator's TRAINPORT_MAX_PENDING_SECONDS, "
        "which bounds the cluster wait only)",
    )
    max_retries: int = Field(default=0, ge=0, le=20)
    retry_on_system_failure: bool = True
    preemptible: bool = Field(
        default=False,
        description="a higher-priority run may stop it (after its checkpoint grace) and requeue it",
    )
    retry_on_exit_codes: list[Annotated[int, Field(ge=0, le=255)]] = Field(
        default_factory=list,
        max_length=64,
        description="retry (within max_retries) only failures with these exit codes",
    )
    no_retry_exit_codes: list[Annotated[int, Field(ge=0, le=255)]] = Field(
        default_factory=list, max_length=64, description="never retry failures with these codes"
    )


class DataSpec(StrictModel):
    datasets: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list, max_length=64
    )


class CodeRef(StrictModel):
    """Where the training code came from, for the provenance record."""

    repo: str = Field(min_length=1, max_length=512)
    commit: str = Field(pattern=r"^[0-9a-fA-F]{7,64}$")


class CheckpointSpec(StrictModel):
    every_steps: int | None = Field(default=None, ge=1, le=10_000_000)
    keep_last: int = Field(default=3, ge=1, le=100)


def _check_env(env: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
    for name in env:
        if not ENV_NAME.fullmatch(name):
            raise ValueError(f"env name {name!r} must match [A-Za-z_][A-Za-z0-9_]*")
        if name.startswith(RESERVED_ENV_PREFIXES) or name in RESERVED_ENV_NAMES:
            raise ValueError(f"env name {name!r} is reserved by the platform")
    return env


def _string_or_secret(value: Any) -> Any:
    """Env values are text or `{secret: NAME}`; say so plainly rather than per union member."""
    if isinstance(value, str | dict):
        return value
    shown = str(value).lower() if isinstance(value, bool) else value
    raise ValueError(
        f'an env value is a string (quote it: "{shown}") or {{secret: NAME}}, '
        f"not {type(value).__name__}"
    )


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Kubernetes label rules; keys under `trainport.dev/` belong to the platform."""
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if key.startswith(RESERVED_LABEL_PREFIX):
            raise ValueError(f"label key {key!r}: the {RESERVED_LABEL_PREFIX} prefix is reserved")
        if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.fullmatch(prefix)):
            raise ValueError(f"label key {key!r}: prefix must be a DNS subdomain")
        if not (0 < len(name) <= 63 and LABEL_NAME.fullmatch(name)):
            raise ValueError(f"label key {key!r}: name must be 1-63 alphanumerics, '-', '_', '.'")
        if value and not (len(value) <= 63 and LABEL_NAME.fullmatch(value)):
            raise ValueError(
                f"label {key!r}: value must be at most 63 alphanumerics, '-', '_', '.'"
            )
    return labels


Env = Annotated[
    dict[
        Annotated[str, Field(max_length=256)],
        Annotated[str | SecretRef, BeforeValidator(_string_or_secret)],
    ],
    Field(max_length=256),
    AfterValidator(_check_env),
]
Labels = Annotated[
    dict[Annotated[str, Field(max_length=317)], Annotated[str, Field(max_length=63)]],
    Field(max_length=64),
    AfterValidator(check_labels),
]


class RunSpec(StrictModel):
    """What to run and on what: the validated, stored form of a user's run document."""

    name: Name | None = None
    image: str | None = Field(default=None, min_length=1, max_length=512)
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None, min_length=1, max_length=256
    )
    recipe: (
        Annotated[str, Field(min_length=1, max_length=63), AfterValidator(check_recipe)] | None
    ) = Field(default=None, description="a built-in recipe: lm")
    parameters: dict[str, Any] | None = None
    env: Env = Field(default_factory=dict)
    compute: Compute = Field(default_factory=Compute)
    scheduling: Scheduling = Field(default_factory=Scheduling)
    data: DataSpec = Field(default_factory=DataSpec)
    labels: Labels = Field(default_factory=dict)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    code: CodeRef | None = Field(default=None, description="git repo and commit, for provenance")

    @model_validator(mode="after")
    def _command_or_recipe(self) -> RunSpec:
        if (self.command is None) == (self.recipe is None):
            raise ValueError("give exactly one of `command` or `recipe`")
        if self.parameters is not None and self.recipe is None:
            raise ValueError("`parameters` go with a `recipe`")
        return self


class RunCreate(RunSpec):
    """The body of `POST /v1/runs`: a run spec plus where the run belongs."""

    project: str | None = Field(
        default=None, max_length=63, description="project name or id; the key's or `default`"
    )

"""The run spec: the document a user submits, as YAML or JSON, validated strictly.

Unknown fields are rejected (a typo must not silently become a default) and every bound is
explicit, so absurd input is a 422 that points at the field rather than a problem later.
Integers in request bodies are strict (core/storable.INTEGER): `false` is not 0, `1.0` is 1.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from core.metrics.from_logs import MAX_PATTERN_CHARS, MAX_PATTERNS, compile_pattern
from core.runs.launcher import Launcher, check_launcher, launcher_of
from core.runs.recipes import RECIPE_MODULES, check_recipe
from core.storable import INTEGER, STORABLE_MAPPING, check_storable

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
MAX_OUTPUT_GLOBS = 64
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


def up_to(n: int) -> str:
    """A regex of the integers 1..n, written without leading zeros."""
    digits, parts = str(n), []
    if len(digits) > 1:
        parts.append(f"[1-9][0-9]{{0,{len(digits) - 2}}}")
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            parts.append(f"{digits[:i]}[{low}-{int(digit) - 1}][0-9]{{{len(digits) - i - 1}}}")
    parts.append(digits)
    return "(?:" + "|".join(parts) + ")"


def _more_than_0_up_to(n: int) -> str:
    """A regex of the decimals x with 0 < x <= n (`4`, `0.5`, `.5`, `1024.0`)."""
    below = f"0*{up_to(n - 1)}(?:\\.[0-9]+)?|" if n > 1 else ""
    return f"(?:{below}0*{n}(?:\\.0+)?|0*\\.[0-9]*[1-9][0-9]*)"


# Kubernetes quantities within the platform's bounds, as one pattern each, so /openapi.json
# states the whole rule: cpus in cores or millicores, at most 1024; memory with a decimal or
# binary suffix, at most 16Ti (2**44 bytes).
CPUS = f"^(?:{_more_than_0_up_to(1024)}|0*{up_to(1024 * 1000)}m)$"
MEMORY_LIMIT = 2**44
_MEMORY_SUFFIXES = {"": 1, "k": 10**3, "Ki": 2**10, "M": 10**6, "Mi": 2**20, "G": 10**9,
                    "Gi": 2**30, "T": 10**12, "Ti": 2**40}  # fmt: skip
MEMORY = "^(?:{})$".format(
    "|".join(
        f"{_more_than_0_up_to(MEMORY_LIMIT // scale)}{suffix}"
        for suffix, scale in _MEMORY_SUFFIXES.items()
    )
)


def _quantity(pattern: str, limit: float, what: str) -> Any:
    """The quantity as text; a number (YAML's `cpus: 4`) must lie in (0, limit]."""

    def check(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"{what} must be a Kubernetes quantity such as '4', '500m', '16Gi'")
        text = value if isinstance(value, str) else format(Decimal(repr(value)), "f")
        if not re.fullmatch(pattern, text):
            raise ValueError(
                f"{what} must be a Kubernetes quantity more than 0 and at most {limit:g} "
                f"(e.g. {'4, 1.5 or 500m' if what == 'cpus' else '512Mi, 16Gi or 1Ti'}); "
                f"got {text!r}"
            )
        return text

    number = {"type": "number", "exclusiveMinimum": 0, "maximum": limit}
    schema = {"anyOf": [{"type": "string", "pattern": pattern}, number]}
    return (BeforeValidator(check), WithJsonSchema(schema))


def parse_duration(value: Any) -> int:
    """Seconds from `3600`, `"90m"`, `"12h"` or `"2d"`."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as '12h' or a number of seconds")
    if isinstance(value, float) and value.is_integer():  # `60.0` is an integer to JSON Schema
        value = int(value)
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


Name = Annotated[
    str,
    Field(min_length=1, max_length=40, json_schema_extra={"pattern": DNS_LABEL.pattern}),
    AfterValidator(_dns_label),
]
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# parse_duration's rule for /openapi.json: seconds, or text with a unit, more than 0 and at most
# MAX_DURATION_SECONDS.
DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_DURATION_SECONDS},
        {
            "type": "string",
            "pattern": "^\\s*(?:{})\\s*$".format(
                "|".join(
                    f"0*{up_to(MAX_DURATION_SECONDS // scale)}{unit}"
                    for unit, scale in _DURATION_UNITS.items()
                )
            ),
        },
    ],
    "description": "'12h', '90m', '30s', '2d' or seconds",
}
Duration = Annotated[int, BeforeValidator(parse_duration), WithJsonSchema(DURATION_SCHEMA)]
Cpus = Annotated[str, *_quantity(CPUS, 1024, "cpus")]
Memory = Annotated[str, *_quantity(MEMORY, MEMORY_LIMIT, "memory")]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value)


class SecretRef(StrictModel):
    secret: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9_.-]+$")


class Compute(StrictModel):
    nodes: Annotated[int, Field(ge=1, le=512), *INTEGER] = 1
    gpus_per_node: Annotated[int, Field(ge=0, le=16), *INTEGER] = 0
    gpu_type: str | None = Field(
        default=None, max_length=63, pattern=r"^[A-Za-z0-9][-_.A-Za-z0-9]*$"
    )
    processes: Annotated[int, Field(ge=1, le=64), *INTEGER] | None = Field(
        default=None, description="ranks per node"
    )
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
    hang_timeout: Duration | None = Field(
        default=None,
        description="'10m' or seconds: no heartbeat for this long while running fails the "
        "attempt as `hung` (a platform failure)",
    )
    max_retries: Annotated[int, Field(ge=0, le=20), *INTEGER] = 0
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
    """Where the training code came from, in the submitter's words: recorded in the provenance
    record as `reported` (the platform checks none of it; `workdir` and `git` it observes)."""

    repo: str = Field(min_length=1, max_length=512)
    commit: str = Field(pattern=r"^[0-9a-fA-F]{7,64}$")
    dirty: bool | None = Field(
        default=None, description="uncommitted changes in the packed working tree (the CLI's word)"
    )


# core/code/git.py's check_url, stated for /openapi.json: an http(s) URL with a host and no
# user part, or a file: URL (which the server may still refuse). A git host is named: an IPv6
# literal's brackets are refused, as a malformed one would be a 422 no pattern can foresee.
_GIT_HOST = r"[-A-Za-z0-9._~%!$&'()*+,;=]+(?::[0-9]*)?"  # RFC 3986 reg-name (no IPv6 literal)
GIT_URL = rf"^(?:https?://{_GIT_HOST}(?:[/?#][^\x00-\x20]*)?|file:/[^\x00-\x20]*)$"


class GitSpec(StrictModel):
    """A repository the platform fetches the run's code from (core/code/git.py)."""

    url: str = Field(
        min_length=1,
        max_length=512,
        pattern=GIT_URL,
        description="https:// (or an allowed file://), no credentials in it",
    )
    ref: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^[A-Za-z0-9_][-A-Za-z0-9._/]*$",
        description="branch or tag; default the remote's HEAD",
    )
    commit: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$",
        description="pinned commit; resolved from `ref` at submit when the server can reach it",
    )
    username: str | None = Field(default=None, min_length=1, max_length=255)
    password: SecretRef | None = Field(default=None, description="{secret: NAME}: a token")


# `_working_dir` and `_relative_path` stated for /openapi.json: `/`-separated segments, none of
# them empty or `..` (nor `.` in a working directory); no backslash; no control character.
_D = r"/\\\x00"  # never inside a working directory's segment (NUL: PostgreSQL refuses it)
_DIR_SEGMENT = rf"(?:[^{_D}.][^{_D}]*|\.[^{_D}.][^{_D}]*|\.\.[^{_D}]+)"
WORKING_DIR = rf"^{_DIR_SEGMENT}(?:/{_DIR_SEGMENT})*$"
_C = r"/\\\x00-\x1f"  # never inside an output path's segment
_OUTPUT_SEGMENT = rf"(?:[^{_C}.][^{_C}]*|\.(?:[^{_C}.][^{_C}]*)?|\.\.[^{_C}]+)"
OUTPUT_PATH = rf"^{_OUTPUT_SEGMENT}(?:/{_OUTPUT_SEGMENT})*/?$"


def _working_dir(value: str) -> str:
    parts = value.split("/")
    if value.startswith("/") or "\\" in value or any(p in {"", ".", ".."} for p in parts):
        raise ValueError("must be a relative path inside the code, without '.' or '..' parts")
    return value


class CheckpointSpec(StrictModel):
    every_steps: Annotated[int, Field(ge=1, le=10_000_000), *INTEGER] | None = None
    keep_last: Annotated[int, Field(ge=1, le=100), *INTEGER] = 3


def _relative_path(value: str) -> str:
    """A path or glob inside the run's working directory: relative, `/`-separated, no `..`."""
    segments = value.split("/")
    if value.startswith("/") or "\\" in value or ".." in segments or "" in segments[:-1]:
        raise ValueError(
            f"{value!r} must be relative to the working directory, '/'-separated, without '..'"
        )
    if any(ord(c) < 32 for c in value):
        raise ValueError(f"{value!r} holds a control character")
    return value


RelativePath = Annotated[
    str,
    Field(min_length=1, max_length=512, json_schema_extra={"pattern": OUTPUT_PATH}),
    AfterValidator(_relative_path),
]


class LogMetricPattern(StrictModel):
    """One `metrics.from_logs` entry: an RE2 pattern with a `step` group and metric groups."""

    pattern: str = Field(min_length=1, max_length=MAX_PATTERN_CHARS)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        compile_pattern(value)  # ValueError: the pattern's own message, at /metrics/...
        return value


class MetricsSpec(StrictModel):
    """Metrics the platform collects without code (core/metrics/from_logs.py)."""

    from_logs: list[LogMetricPattern] = Field(default_factory=list, max_length=MAX_PATTERNS)
    tensorboard_dir: RelativePath | None = Field(
        default=None,
        description="a folder relative to the working directory whose TensorBoard event files' "
        "scalars become series (core/metrics/tensorboard.py)",
    )


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


# `GET /v1/runs?labels=` (core/runs/service.parse_label_selector) as one pattern for
# /openapi.json: comma-separated `key` or `key=value` terms, spaces around them ignored, keys
# and values by check_labels's rules; keys under the reserved prefix are stated apart (`not`).
_LABEL_NAME = r"[A-Za-z0-9](?:[-_.A-Za-z0-9]{0,61}[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_SELECTOR_TERM = rf" *(?:(?:{_DNS_SUBDOMAIN}/)?{_LABEL_NAME} *(?:= *(?:{_LABEL_NAME})? *)?)?"
LABEL_SELECTOR = rf"^{_SELECTOR_TERM}(?:,{_SELECTOR_TERM})*$"
RESERVED_SELECTOR = r"(?:^|,) *trainport\.dev/"

ENV_NAMES_SCHEMA: dict[str, Any] = {  # _check_env, stated for /openapi.json
    "propertyNames": {
        "pattern": ENV_NAME.pattern,
        "maxLength": 256,
        "not": {
            "anyOf": [
                {"pattern": "^(?:" + "|".join(RESERVED_ENV_PREFIXES) + ")"},
                {"enum": sorted(RESERVED_ENV_NAMES)},
            ]
        },
    }
}
Env = Annotated[
    dict[
        Annotated[str, Field(max_length=256)],
        Annotated[str | SecretRef, BeforeValidator(_string_or_secret)],
    ],
    Field(max_length=256, json_schema_extra=ENV_NAMES_SCHEMA),
    AfterValidator(_check_env),
]
LABELS_SCHEMA: dict[str, Any] = {  # check_labels, stated for /openapi.json
    "propertyNames": {
        "pattern": rf"^(?:{_DNS_SUBDOMAIN}/)?{_LABEL_NAME}$",
        "not": {"pattern": r"^trainport\.dev/"},
        "maxLength": 317,
    },
    "additionalProperties": {"type": "string", "pattern": rf"^(?:{_LABEL_NAME})?$"},
}
Labels = Annotated[
    dict[Annotated[str, Field(max_length=317)], Annotated[str, Field(max_length=63)]],
    Field(max_length=64, json_schema_extra=LABELS_SCHEMA),
    AfterValidator(check_labels),
]


# `_command_or_recipe` and `check_launcher` stated for /openapi.json: exactly one of `command`
# and `recipe`; `parameters` only with a `recipe`; at most one code source, and `working_dir`
# only with one; launcher `none` only for one process on one node.
_RECIPE_GIVEN = {"required": ["recipe"], "properties": {"recipe": {"type": "string"}}}
_WORKDIR_GIVEN = {"required": ["workdir"], "properties": {"workdir": {"type": "string"}}}
_GIT_GIVEN = {"required": ["git"], "properties": {"git": {"type": "object"}}}
_ONE_OR_UNSET = {"anyOf": [{"const": 1}, {"type": "null"}]}
COMMAND_OR_RECIPE: dict[str, Any] = {
    "allOf": [
        {
            "if": {"required": ["command"], "properties": {"command": {"type": "array"}}},
            "then": {"properties": {"recipe": {"type": "null"}}},
            "else": _RECIPE_GIVEN,
        },
        {
            "if": {"required": ["parameters"], "properties": {"parameters": {"type": "object"}}},
            "then": _RECIPE_GIVEN,
        },
        {"not": {"allOf": [_WORKDIR_GIVEN, _GIT_GIVEN]}},
        {
            "if": {"required": ["working_dir"], "properties": {"working_dir": {"type": "string"}}},
            "then": {"anyOf": [_WORKDIR_GIVEN, _GIT_GIVEN]},
        },
        {
            "if": {"required": ["launcher"], "properties": {"launcher": {"const": "none"}}},
            "then": {
                "properties": {
                    "compute": {"properties": {"nodes": _ONE_OR_UNSET, "processes": _ONE_OR_UNSET}}
                }
            },
        },
    ]
}


class RunSpec(StrictModel):
    """What to run and on what: the validated, stored form of a user's run document."""

    model_config = ConfigDict(json_schema_extra=COMMAND_OR_RECIPE)

    name: Name | None = None
    image: str | None = Field(default=None, min_length=1, max_length=512)
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None, min_length=1, max_length=256
    )
    recipe: (
        Annotated[
            str,
            Field(min_length=1, max_length=63, json_schema_extra={"enum": sorted(RECIPE_MODULES)}),
            AfterValidator(check_recipe),
        ]
        | None
    ) = Field(default=None, description="a built-in recipe: lm")
    parameters: dict[str, Any] | None = Field(default=None, json_schema_extra=STORABLE_MAPPING)
    env: Env = Field(default_factory=dict)
    compute: Compute = Field(default_factory=Compute)
    scheduling: Scheduling = Field(default_factory=Scheduling)
    data: DataSpec = Field(default_factory=DataSpec)
    labels: Labels = Field(default_factory=dict)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    code: CodeRef | None = Field(default=None, description="git repo and commit, for provenance")
    workdir: str | None = Field(
        default=None,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="the digest of an uploaded code snapshot (the CLI and SDK upload a folder)",
    )
    git: GitSpec | None = Field(default=None, description="a repository to fetch the code from")
    working_dir: (
        Annotated[
            str,
            Field(min_length=1, max_length=1024, json_schema_extra={"pattern": WORKING_DIR}),
            AfterValidator(_working_dir),
        ]
        | None
    ) = Field(default=None, description="inside the code; default its root")
    launcher: Launcher | None = Field(
        default=None,
        description="none, torchrun or env; default none for one process on one node, else env",
    )
    outputs: list[RelativePath] = Field(
        default_factory=list,
        max_length=MAX_OUTPUT_GLOBS,
        description="globs relative to the working directory, uploaded when an attempt ends",
    )
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)

    @model_validator(mode="after")
    def _command_or_recipe(self) -> RunSpec:
        if (self.command is None) == (self.recipe is None):
            raise ValueError("give exactly one of `command` or `recipe`")
        if self.parameters is not None and self.recipe is None:
            raise ValueError("`parameters` go with a `recipe`")
        if self.workdir is not None and self.git is not None:
            raise ValueError("give at most one code source: `workdir` or `git`")
        if self.working_dir is not None and self.workdir is None and self.git is None:
            raise ValueError("`working_dir` goes with a code source (`workdir` or `git`)")
        return self

    @model_validator(mode="after")
    def _resolve_launcher(self) -> RunSpec:
        """Store the launcher the run will get, so the run shows it (core/runs/launcher.py)."""
        shape = self.model_dump(include={"launcher", "compute"}, mode="json")
        check_launcher(shape)
        self.launcher = launcher_of(shape)
        return self


class RunCreate(RunSpec):
    """The body of `POST /v1/runs`: a run spec plus where the run belongs."""

    project: str | None = Field(
        default=None, max_length=63, description="project name or id; the key's or `default`"
    )
    # The body as the client sent it, when the API completed it (a git ref resolved to a
    # commit): an Idempotency-Key's retry is the same request even if the branch moved since.
    _as_sent: dict[str, Any] | None = PrivateAttr(default=None)

    def as_sent(self) -> dict[str, Any]:
        """What the Idempotency-Key's fingerprint is taken of."""
        return self._as_sent if self._as_sent is not None else self.model_dump(mode="json")

    def completed(self, **fields: Any) -> RunCreate:
        """This body with fields the API filled in, remembering what was sent."""
        done = self.model_copy(update=fields)
        done._as_sent = self.as_sent()
        return done

"""`RunSpec`: a run document loaded from YAML or a dict, overridden by dotted paths, sent as is.

Checked loosely here (the right shapes, `command` or `recipe`), so a typo in a local file fails
before a request is made; the server validates strictly and is the authority. Fields this SDK
does not know yet are kept and sent along.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from trainport.errors import TrainportError
from trainport.models import TrainportModel

FLAT_MAPS = frozenset({"labels", "env"})


class SpecError(TrainportError, ValueError):
    """A run document that cannot be right: unreadable YAML, wrong shapes, a bad override."""


class RunSpec(TrainportModel):
    """What to run and on what. Only the fields you set are sent; the server fills defaults."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    project: str | None = None
    image: str | None = None
    command: list[str] | None = None
    recipe: str | None = None
    parameters: dict[str, Any] | None = None
    env: dict[str, Any] | None = None
    compute: dict[str, Any] | None = None
    scheduling: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    labels: dict[str, str] | None = None
    checkpoint: dict[str, Any] | None = None
    workdir: str | None = None  # a local folder (packed and uploaded at create) or a digest
    git: dict[str, Any] | None = None
    working_dir: str | None = None

    @field_validator("command", mode="before")
    @classmethod
    def _exec_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("`command` is a list of strings (exec form), not a shell string")
        return value

    @field_validator("env", "labels", mode="before")
    @classmethod
    def _text_values(cls, value: Any) -> Any:
        # Env values and labels are text; YAML reads `STEPS: 100` as a number. Only scalars are
        # turned into text: a `{secret: NAME}` env value stays what it is.
        if not isinstance(value, Mapping):
            return value
        return {key: as_text(item) for key, item in value.items()}

    @model_validator(mode="after")
    def _command_or_recipe(self) -> RunSpec:
        if self.command is None and self.recipe is None:
            raise ValueError("give `command` (with `image`) or a `recipe`")
        return self

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> RunSpec:
        if not isinstance(document, Mapping):
            raise SpecError("A run spec must be a mapping of fields (YAML or JSON object).")
        try:
            return cls.model_validate(dict(document))
        except PydanticValidationError as exc:
            raise SpecError(f"Invalid run spec: {_summary(exc)}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunSpec:
        """Load a run document from a YAML (or JSON) file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(
                f"Cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        return cls.from_yaml_string(text, source=str(path))

    @classmethod
    def from_yaml_string(cls, text: str, *, source: str = "the run spec") -> RunSpec:
        """Parse a run document from YAML (or JSON) text."""
        try:
            import yaml
        except ImportError:  # pragma: no cover - PyYAML ships with the `cli` extra
            raise SpecError("Reading YAML needs PyYAML: pip install 'trainport[cli]'") from None
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{source} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(document, dict):
            kind = type(document).__name__
            raise SpecError(f"{source} must hold a mapping of run fields, not a {kind}.")
        return cls.from_dict(document)

    def to_dict(self) -> dict[str, Any]:
        """The document to send: the fields that were set, unknown ones included."""
        return self.model_dump(mode="json", exclude_unset=True)

    def with_overrides(self, overrides: Mapping[str, Any]) -> RunSpec:
        """A copy with `{"parameters.lr": 3e-4, "compute.nodes": 2}` applied (dotted paths;
        after `labels.` or `env.` the rest is one key, dots and all)."""
        document = copy.deepcopy(self.to_dict())
        for path, value in overrides.items():
            set_dotted(document, path, value)
        return type(self).from_dict(document)


def as_text(value: Any) -> Any:
    """A number or boolean as the text YAML would write for it; anything else unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def set_dotted(document: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, creating the missing levels.

    `labels` and `env` are flat maps whose keys may hold dots (`labels.example.com/team`), so
    everything after their name is one key.
    """
    head, _, rest = path.partition(".")
    keys = [head, rest] if head in FLAT_MAPS and rest else path.split(".")
    if not all(keys):
        raise SpecError(f"Override path {path!r} must be dotted field names, e.g. compute.nodes.")
    node = document
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            where = ".".join(keys[: depth + 1])
            raise SpecError(f"Cannot override {path!r}: {where} is not a mapping.")
        node = child
    node[keys[-1]] = value


def _summary(exc: PydanticValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "spec"
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)

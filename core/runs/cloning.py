"""Cloning a run: its stored spec with dotted-path overrides, submitted as a new run.

The overrides follow the CLI's `--set` rules exactly (sdk/trainport/spec.py `set_dotted`): a
dotted path names nested fields, missing levels are created, and after `labels.` or `env.` the
rest is one key, dots and all (`labels.example.com/team`). Values arrive typed (JSON), as the
CLI sends them. The result is validated as a new `POST /v1/runs` body, so a clone can never
hold what a submission could not. The new run records `cloned_from`, which its provenance
record carries too.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import FieldError, InvalidInput
from core.runs.launcher import check_launcher
from core.runs.spec import Name, RunCreate

FLAT_MAPS = ("labels", "env")  # maps whose keys may hold dots


class CloneIn(BaseModel):
    """The body of `POST /v1/runs/{id}/clone`."""

    model_config = ConfigDict(extra="forbid")

    overrides: dict[Annotated[str, Field(min_length=1, max_length=400)], Any] = Field(
        default_factory=dict,
        max_length=64,
        description='dotted paths to new values, as `--set`: {"parameters.lr": 0.0003}',
    )
    name: Name | None = Field(default=None, description="the new run's name; default: generated")
    project: str | None = Field(
        default=None, max_length=63, description="project name or id; default: the source's"
    )


def set_dotted(document: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, creating the missing levels (the CLI's `--set` rule)."""
    head, _, rest = path.partition(".")
    keys = [head, rest] if head in FLAT_MAPS and rest else path.split(".")
    if not all(keys):
        raise _bad(path, "must be dotted field names, e.g. compute.nodes")
    node = document
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise _bad(path, f"{'.'.join(keys[: depth + 1])} is not a mapping")
        node = child
    node[keys[-1]] = value


def _bad(path: str, why: str) -> InvalidInput:
    pointer = "/overrides/" + path.replace("~", "~0").replace("/", "~1")
    return InvalidInput(f"Cannot override {path!r}: {why}.", [FieldError(pointer, why)])


def cloned_body(spec: dict[str, Any], project_id: str, body: CloneIn) -> RunCreate:
    """The create body of the clone: the source's spec, a fresh name, the overrides applied."""
    document = copy.deepcopy(spec)
    document["name"] = None  # a clone is a new run: it gets its own generated name
    for path, value in body.overrides.items():
        set_dotted(document, path, value)
    git = document.get("git")
    moved = any(path.startswith("git.") for path in body.overrides)
    if moved and isinstance(git, dict) and "git.commit" not in body.overrides:
        git.pop("commit", None)  # a new url or ref: resolved again, as at submit
    if "launcher" not in body.overrides and _outgrown_launcher(document):
        document["launcher"] = None  # the default for the new shape, as a submission gets
    if body.name is not None:
        document["name"] = body.name
    document["project"] = body.project or project_id
    try:
        return RunCreate.model_validate(document)
    except ValidationError as exc:
        errors = [
            FieldError(_pointer(error["loc"]), error["msg"].removeprefix("Value error, "))
            for error in exc.errors()[:20]
        ]
        raise InvalidInput("The clone's spec is not valid with these overrides.", errors).with_code(
            "clone_spec_invalid"
        ) from None


def _outgrown_launcher(document: dict[str, Any]) -> bool:
    """Whether the stored launcher, resolved for the source's shape (`none` for one process on
    one node), no longer fits the shape the overrides made."""
    try:
        check_launcher(document)
    except ValueError:
        return True
    return False


def _pointer(location: tuple[int | str, ...]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in location)

"""Shapes of secrets: write-only request bodies, metadata-only answers, and what a launch gets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.storable import check_storable
from core.tenants.schemas import StorableInput

# The names a run spec may use in `{secret: NAME}` (core/runs/spec.py), at most 128 characters
# so that a project id and the name still fit one Kubernetes Secret key (253).
SECRET_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"  # noqa: S105 - a pattern, not a password
MAX_SECRET_NAME = 128
MAX_SECRET_BYTES = 64 * 1024


def _check_value(value: str) -> str:
    # Messages never quote the value: they end up in problem documents and logs.
    try:
        check_storable(value)
    except ValueError as error:
        raise ValueError(f"the secret value is not storable: {error}") from None
    if len(value.encode()) > MAX_SECRET_BYTES:
        raise ValueError(f"a secret value holds at most {MAX_SECRET_BYTES} bytes")
    return value


class SecretCreate(StorableInput):
    name: str = Field(min_length=1, max_length=MAX_SECRET_NAME, pattern=SECRET_NAME_PATTERN)
    value: str = Field(
        min_length=1,
        description="never returned by any route",
        json_schema_extra={"writeOnly": True},
    )
    project: str | None = Field(
        default=None, max_length=63, description="project name or id; empty: the whole org"
    )

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: object) -> object:
        return _check_value(value) if isinstance(value, str) else value


class SecretUpdate(StorableInput):
    value: str = Field(
        min_length=1,
        description="the new value; never returned by any route",
        json_schema_extra={"writeOnly": True},
    )

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: object) -> object:
        return _check_value(value) if isinstance(value, str) else value


class SecretOut(BaseModel):
    """A secret's metadata: never its value."""

    model_config = ConfigDict(from_attributes=True)
    name: str
    project_id: str | None = Field(description="null: org-wide")
    version: int = Field(description="1 on creation, +1 on each rotation")
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    updated_by: str | None


@dataclass(frozen=True)
class LaunchSecrets:
    """The secret values one launch may use: its own org's, resolved at launch, never logged.

    `values`: each name the spec's env names -> its value (the run's project's over the org's).
    `keys`: each such name -> its key in the org's store (the org's Kubernetes Secret).
    `live_keys`: every key the org's store should hold now (all its secrets, none decrypted), so
    the store can drop deleted ones; None where unknown (nothing is dropped then).
    """

    values: dict[str, str] = field(default_factory=dict, repr=False)
    keys: dict[str, str] = field(default_factory=dict)
    live_keys: frozenset[str] | None = None

    def store(self) -> dict[str, str]:
        """The org's store entries this launch needs: key -> value."""
        return {self.keys[name]: value for name, value in self.values.items()}

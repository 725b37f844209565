"""Tenant-facing shapes: who is calling (Principal) and the documents the API returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import Forbidden
from core.storable import INTEGER, check_storable


class Role(StrEnum):
    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: an API key, its org, its role and its optional project scope."""

    org_id: str
    key_id: str
    role: Role
    project_id: str | None = None
    # Set for a run token (core/runs/run_tokens.py): the one run, and attempt, it speaks for.
    run_id: str | None = None
    attempt: int | None = None

    def require(self, role: Role) -> None:
        if self.role.rank < role.rank:
            raise Forbidden(
                f"This action needs the {role.value} role; this key is {self.role.value}."
            )


@dataclass(frozen=True, slots=True)
class KeyState:
    """What authentication reads of an API key's row (`repository.KEY_STATE_COLUMNS`, in order)."""

    id: str
    org_id: str
    role: str
    project_id: str | None
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None


Slug = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class StorableInput(BaseModel):
    """A request body: unknown fields refused, every value storable as given."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value)


class ProjectCreate(StorableInput):
    name: str = Slug
    description: str = Field(default="", max_length=1000)


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    description: str
    created_at: datetime


class ApiKeyCreate(StorableInput):
    name: str = Field(min_length=1, max_length=100)
    role: Role = Role.MEMBER
    project: str | None = Field(default=None, max_length=63, description="limit to one project")
    expires_in_days: Annotated[int, Field(ge=1, le=3650), *INTEGER] | None = None


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    role: Role
    prefix: str
    project_id: str | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the full key; shown only in this response")


class OrganizationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    created_at: datetime


class Me(BaseModel):
    organization: OrganizationOut
    key: ApiKeyOut

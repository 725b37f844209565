"""Provenance documents: the signed record and the verification request and answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SignedRecord(BaseModel):
    record: dict[str, Any]
    signature: str
    algorithm: str
    key_id: str


class FileDigest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    path: str = Field(min_length=1, max_length=1024)
    sha256: str = Field(max_length=64)


class CheckpointClaim(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sha256: str = Field(max_length=64, description="sha256 of the checkpoint's COMMIT document")
    files: list[FileDigest] | None = Field(default=None, max_length=10_000)


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    record: dict[str, Any]
    signature: str = Field(max_length=256)
    algorithm: str | None = Field(default=None, max_length=32)
    key_id: str | None = Field(default=None, max_length=64)
    checkpoint: CheckpointClaim | None = None


class Verdict(BaseModel):
    valid: bool
    reason: str | None = None


class VerifyingKey(BaseModel):
    key_id: str
    algorithm: str = Field(description="`ed25519`")
    public_key: str = Field(description="the raw 32-byte public key, base64")
    public_key_pem: str = Field(description="the same key as a PEM SubjectPublicKeyInfo")
    status: str = Field(
        default="signing",
        description="`signing`: new records are signed with it; `retired`: it only verifies "
        "records it signed before a rotation",
    )


class VerifyingKeys(BaseModel):
    """What checks this server's provenance signatures offline: the signature (hex) over the
    record's canonical JSON (keys sorted, separators `,` and `:`, UTF-8 unescaped). The signing
    key comes first; a record's `key_id` names the key that signed it."""

    keys: list[VerifyingKey]

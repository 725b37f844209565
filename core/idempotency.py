"""Idempotency keys: a retried create with the same key returns what the first one made.

Records are per organisation and kept at least `idempotency_ttl_hours`. Two concurrent requests
with one key race on the record's primary key: the loser waits for the winner's commit, sees the
unique violation, and replays the winner's result, so one key never makes two runs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.errors import FieldError, InvalidInput
from core.models import IdempotencyRecord, utcnow

MAX_KEY_LENGTH = 255
# validate_key's rule as /openapi.json states it, over what a header can carry (Latin-1, its
# ends trimmed by HTTP): printable characters, no space at either end.
_PRINTABLE = r"!-~\xa1-\xac\xae-\xff"
KEY_PATTERN = rf"^[{_PRINTABLE}](?:[ {_PRINTABLE}]{{0,253}}[{_PRINTABLE}])?$"


def request_hash(document: Any) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            "The Idempotency-Key header must be 1-255 printable characters.",
            [FieldError.for_parameter("Idempotency-Key", "1-255 printable characters")],
        )
    return key


def find(session: Session, org_id: str, key: str, fingerprint: str) -> str | None:
    """The run id an earlier request with this key made, if that request had the same body."""
    record = session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.org_id == org_id,
            IdempotencyRecord.key == key,
            IdempotencyRecord.expires_at > utcnow(),
        )
    ).first()
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise InvalidInput(
            "This Idempotency-Key was already used with a different request body; "
            "use a new key for a different run.",
        ).with_code("idempotency_key_reused")
    return record.run_id


def remember(
    session: Session, org_id: str, key: str, fingerprint: str, run_id: str, ttl_hours: int
) -> None:
    """Claim the key for this request; raises IntegrityError when another request holds it."""
    record = record_values(org_id, key, fingerprint, run_id, ttl_hours)
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.org_id == org_id,
            IdempotencyRecord.key == key,
            IdempotencyRecord.expires_at <= record["created_at"],
        )
    )
    session.add(IdempotencyRecord(**record))
    session.flush()


def record_values(
    org_id: str, key: str, fingerprint: str, run_id: str, ttl_hours: int
) -> dict[str, Any]:
    """The record that claims `key` for a run: `remember`'s row, and core/runs/creation.py's."""
    now = utcnow()
    return {
        "org_id": org_id,
        "key": key,
        "request_hash": fingerprint,
        "run_id": run_id,
        "created_at": now,
        "expires_at": now + timedelta(hours=ttl_hours),
    }

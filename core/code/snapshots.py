"""An org's code snapshots: content-addressed archives in its part of the object store.

`PUT /v1/code/{digest}` streams the body into a fresh key of the org's store
(`code/<hex>/<upload id>/snapshot.tar`), hashing it on the way, with no transaction open; a
body that does not hash to `digest` is deleted and refused (422 `digest_mismatch`): a client
cannot claim a digest for other bytes. A short transaction then records the snapshot, or finds
that a concurrent upload recorded it first. Snapshots are per org: another
org's digest is unknown here even when the bytes are the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import InvalidInput, NotFound, TrainportError
from core.ids import new_id
from core.models import CodeSnapshot, utcnow
from core.settings import Settings
from core.storage.backends import org_store
from core.storage.base import HashingReader, ObjectStore
from core.tenants.schemas import Principal, Role

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
UPLOAD = "upload"
GIT = "git"
ARCHIVE = "snapshot.tar"


class DigestMismatch(TrainportError):
    def __init__(self, claimed: str, found: str) -> None:
        super().__init__(
            f"The body hashes to {found}, not {claimed}: the URL names the sha256 of exactly "
            "the bytes sent (re-pack and upload again if the folder changed meanwhile).",
            422,
            "digest_mismatch",
            "Digest mismatch",
        )


@dataclass(frozen=True)
class Staged:
    digest: str
    size: int
    storage_key: str


def check_digest(digest: str) -> str:
    if not DIGEST.fullmatch(digest):
        raise InvalidInput(f"{digest!r} is not a snapshot digest: sha256:<64 lower-case hex>.")
    return digest


def find(session: Session, org_id: str, digest: str) -> CodeSnapshot | None:
    return session.get(CodeSnapshot, (org_id, digest))


def get(session: Session, caller: Principal, digest: str) -> CodeSnapshot:
    """The org's snapshot, or 404 (another org's snapshot is as unknown as a missing one)."""
    found = find(session, caller.org_id, check_digest(digest))
    if found is None:
        raise NotFound(
            f"Code snapshot {digest} is not in this organisation's store: upload it with "
            f"PUT /v1/code/{digest} (the CLI and SDK do, for a run's `workdir`)."
        )
    return found


def for_git(session: Session, org_id: str, url: str, commit: str) -> CodeSnapshot | None:
    """The snapshot a worker already packed from this commit of this repository, if any."""
    query = select(CodeSnapshot).where(
        CodeSnapshot.org_id == org_id,
        CodeSnapshot.git_url == url,
        CodeSnapshot.git_commit == commit,
    )
    return session.scalars(query.limit(1)).first()


def store_upload(
    settings: Settings, org_id: str, digest: str, stream: BinaryIO, limit: int | None = None
) -> Staged:
    """Stream an archive into a fresh key of the org's store and check its digest (storage
    I/O only: call it with no transaction open)."""
    check_digest(digest)
    folder = f"code/{digest.removeprefix('sha256:')}/{new_id('upl')}/"
    key = folder + ARCHIVE
    store = org_store(settings, org_id)
    reader = HashingReader(stream, limit or settings.max_code_snapshot_bytes)
    try:
        store.put_stream(key, reader)  # type: ignore[arg-type]  # read-once file-like
    except BaseException:
        store.delete_prefix(folder)
        raise
    found = f"sha256:{reader.sha256}"
    if found != digest:
        store.delete_prefix(folder)
        raise DigestMismatch(digest, found)
    return Staged(digest, reader.size, key)


def record(
    session: Session,
    org_id: str,
    staged: Staged,
    created_by: str | None,
    git: tuple[str, str] | None = None,
) -> tuple[CodeSnapshot, bool]:
    """Record a verified upload; (the snapshot, whether this call made it). A snapshot that
    exists wins, and the caller deletes its own copy (`discard`) after committing."""
    existing = find(session, org_id, staged.digest)
    if existing is not None:
        return existing, False
    row = CodeSnapshot(
        org_id=org_id,
        digest=staged.digest,
        size_bytes=staged.size,
        storage_key=staged.storage_key,
        origin=GIT if git else UPLOAD,
        git_url=git[0] if git else None,
        git_commit=git[1] if git else None,
        created_by=created_by,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent upload of the same content committed first
        winner = find(session, org_id, staged.digest)
        assert winner is not None
        return winner, False
    return row, True


def discard(settings: Settings, org_id: str, staged: Staged) -> None:
    folder = staged.storage_key.removesuffix(ARCHIVE)
    org_store(settings, org_id).delete_prefix(folder)


def upload(
    session: Session, caller: Principal, settings: Settings, digest: str, stream: BinaryIO
) -> tuple[CodeSnapshot, bool]:
    """The whole PUT: role check, stream and verify (no transaction), record (short one)."""
    caller.require(Role.MEMBER)
    check_digest(digest)
    session.commit()  # storage I/O comes next: no transaction stays open across it
    staged = store_upload(settings, caller.org_id, digest, stream)
    row, created = record(session, caller.org_id, staged, caller.key_id)
    session.commit()
    if not created:
        discard(settings, caller.org_id, staged)  # the same content arrived twice: keep one
    return row, created


def chunks(settings: Settings, row: CodeSnapshot) -> Iterator[bytes]:
    """The snapshot's bytes, from the org's store."""
    return _store(settings, row).iter_chunks(row.storage_key)


def _store(settings: Settings, row: CodeSnapshot) -> ObjectStore:
    return org_store(settings, row.org_id)


@dataclass(frozen=True)
class ShippedCode:
    """The code the platform ships to a run: a snapshot of its org, and where it came from."""

    digest: str
    size_bytes: int
    origin: str
    git_url: str | None = None
    git_ref: str | None = None
    git_commit: str | None = None

    @classmethod
    def of(cls, row: CodeSnapshot, ref: str | None = None) -> ShippedCode:
        return cls(row.digest, row.size_bytes, row.origin, row.git_url, ref, row.git_commit)

    def record(self) -> dict[str, object]:
        """Its provenance entry: observed, since the platform hashed (or fetched) it itself."""
        entry: dict[str, object] = {
            "source": "observed",
            "sha256": self.digest.removeprefix("sha256:"),
            "digest": self.digest,
            "size_bytes": self.size_bytes,
            "origin": self.origin,
        }
        if self.origin == GIT:
            entry["git"] = {"url": self.git_url, "ref": self.git_ref, "commit": self.git_commit}
        return entry

"""Checkpoint rules: the run's checkpoint location, registering a committed step, listing.

The runtime writes `<location>/step-<step:010d>/` and its `COMMIT` marker last (so a folder
without one is incomplete), then registers the step. Registration reads the marker back from
storage — outside any transaction — checks it against the request, re-hashes the stored files
themselves (up to `checkpoint_hash_max_bytes` in all) so a digest the runtime reported but the
stored bytes contradict is refused, and records the marker's sha256, which provenance
verification later matches. Each file records whether its digest was `observed` (hashed here).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.checkpoints import repository
from core.checkpoints.schemas import (
    COMMIT_MARKER,
    MAX_COMMIT_BYTES,
    CheckpointFile,
    CheckpointIn,
    CheckpointOut,
    CommitDocument,
    step_folder,
)
from core.datasets.schemas import FileEntry, check_path
from core.errors import Conflict, FieldError, InvalidInput, NotFound
from core.models import Checkpoint, Run, utcnow
from core.runs.service import get_run, record_checkpoint
from core.settings import Settings
from core.storage.backends import org_store
from core.storage.base import ObjectNotFound, ObjectStore
from core.tenants.schemas import Principal, Role
from core.webhooks import events as webhook_events
from core.webhooks.schemas import EventType


@dataclass(frozen=True)
class Registered:
    checkpoint: Checkpoint
    created: bool


def location(settings: Settings, org_id: str, run_id: str) -> ObjectStore:
    """Every attempt of a run writes its checkpoints here (TRAINPORT_CHECKPOINT_URI)."""
    return org_store(settings, org_id).scoped(f"runs/{run_id}/checkpoints/")


def run_for_registration(session: Session, caller: Principal, run_id: str) -> Run:
    """The run a checkpoint is registered for: a member's, or its own run token's, else 404."""
    caller.require(Role.MEMBER)
    return get_run(session, caller, run_id)


def read_commit(settings: Settings, run: Run, body: CheckpointIn) -> bytes:
    """The step's COMMIT marker, as stored (no transaction may be open: this is storage I/O).

    Read from the step's own folder first: a missing marker is the storage's state (409), which
    no body can mend; a `path` other than that folder is then the body's mistake (422).
    """
    folder = step_folder(body.step)
    try:
        marker = location(settings, run.org_id, run.id).read_bytes(
            folder + COMMIT_MARKER, MAX_COMMIT_BYTES
        )
    except ObjectNotFound:
        raise Conflict(
            f"{folder}{COMMIT_MARKER} is missing: write the checkpoint, then its COMMIT "
            "marker, then register it.",
            "checkpoint_not_committed",
        ) from None
    if body.path != folder:
        raise InvalidInput(
            f"Checkpoint path must be {folder!r} for step {body.step}.",
            [FieldError("/path", "step-<step:010d>/")],
        )
    return marker


def hash_stored_files(settings: Settings, run: Run, body: CheckpointIn) -> frozenset[str]:
    """The paths whose stored bytes this API hashed and found as reported (storage I/O: no
    transaction may be open). Files past the byte budget are left to the runtime's word."""
    store = location(settings, run.org_id, run.id)
    budget = settings.checkpoint_hash_max_bytes
    hashed: set[str] = set()
    for entry in sorted(body.files, key=lambda f: f.size):
        if entry.size > budget:
            break
        budget -= entry.size
        check_path(entry.path)
        if _stored_sha256(store, body.path + entry.path) != entry.sha256:
            raise InvalidInput(
                f"{body.path}{entry.path} as stored does not have the sha256 the runtime "
                "reported: write the file completely, then its COMMIT marker, then register."
            ).with_code("checkpoint_digest_mismatch")
        hashed.add(entry.path)
    return frozenset(hashed)


def _stored_sha256(store: ObjectStore, key: str) -> str:
    digest = hashlib.sha256()
    try:
        for chunk in store.iter_chunks(key):
            digest.update(chunk)
    except ObjectNotFound:
        raise InvalidInput(
            f"{key} is listed in the COMMIT marker but is not in storage."
        ).with_code("checkpoint_digest_mismatch") from None
    return digest.hexdigest()


def _check_commit(body: CheckpointIn, marker: bytes) -> None:
    try:
        commit = CommitDocument.model_validate_json(marker)
    except ValidationError:
        raise Conflict(
            f"{body.path}{COMMIT_MARKER} is not a valid COMMIT document.",
            "checkpoint_not_committed",
        ) from None
    given = {(f.path, f.size, f.sha256) for f in body.files}
    if commit.step != body.step or {(f.path, f.size, f.sha256) for f in commit.files} != given:
        raise InvalidInput(
            f"{body.path}{COMMIT_MARKER} names a different step or files than this request."
        )
    for entry in body.files:
        check_path(entry.path)


def register(
    session: Session,
    caller: Principal,
    run_id: str,
    body: CheckpointIn,
    marker: bytes,
    observed: frozenset[str] = frozenset(),
) -> Registered:
    """Record the step (idempotent: the same COMMIT again answers the stored checkpoint);
    `observed` names the files whose digest the API computed from storage."""
    _check_commit(body, marker)
    run = run_for_registration(session, caller, run_id)
    values = {
        "org_id": run.org_id,
        "attempt": caller.attempt or run.attempt,
        "path": body.path,
        "files": [{**f.model_dump(), "observed": f.path in observed} for f in body.files],
        "size_bytes": sum(f.size for f in body.files),
        "sha256": hashlib.sha256(marker).hexdigest(),
        "metrics": {k: v for k, v in body.metrics.items() if math.isfinite(v)},  # JSON has no NaN
    }
    return _upsert(session, run, body.step, values)


def record_observed(
    session: Session, run: Run, attempt: int, step: int, files: list[FileEntry], marker: bytes
) -> Registered:
    """Record a checkpoint the platform made itself from files a run left in its checkpoint
    folder (workers/harvest.py): the platform hashed every file, and wrote the marker."""
    values = {
        "org_id": run.org_id,
        "attempt": attempt,
        "path": step_folder(step),
        "files": [{**f.model_dump(), "observed": True} for f in files],
        "size_bytes": sum(f.size for f in files),
        "sha256": hashlib.sha256(marker).hexdigest(),
        "metrics": {},
    }
    return _upsert(session, run, step, values)


def _upsert(session: Session, run: Run, step: int, values: dict[str, Any]) -> Registered:
    """Insert the step (with its event), or (a rewritten step: the newer COMMIT wins) update it."""
    run_id = run.id
    existing = repository.locked(session, run_id, step)
    if existing is None:
        try:
            with session.begin_nested():
                checkpoint = Checkpoint(run_id=run_id, step=step, created_at=utcnow(), **values)
                session.add(checkpoint)
                session.flush()
            record_checkpoint(session, run, step, values["attempt"])
            data = {"run": webhook_events.run_data(run), "checkpoint": _hook_data(checkpoint)}
            webhook_events.emit(
                session, run.org_id, run.project_id, EventType.CHECKPOINT_COMMITTED, data
            )
            return Registered(checkpoint, created=True)
        except IntegrityError:  # a second rank registered the same step first
            existing = repository.locked(session, run_id, step)
            assert existing is not None
    if existing.sha256 != values["sha256"]:
        for name, value in values.items():
            setattr(existing, name, value)
        session.flush()
    return Registered(existing, created=False)


def _hook_data(row: Checkpoint) -> dict[str, object]:
    fields = ("step", "attempt", "path", "size_bytes", "sha256", "metrics")
    return {name: getattr(row, name) for name in fields}


def registered(session: Session, caller: Principal, run_id: str) -> tuple[Run, list[Checkpoint]]:
    """The run and every checkpoint ever registered for it, newest step first."""
    run = get_run(session, caller, run_id)
    return run, repository.of_run(session, run.id)


def still_stored(run: Run, rows: list[Checkpoint], settings: Settings) -> list[CheckpointOut]:
    """The registered checkpoints whose COMMIT marker is still in storage (one listing; storage
    I/O, so no transaction may be open). The runtime keeps only the newest `keep_last` and
    deletes older folders; their rows stay, so a downloaded copy of one still verifies against
    the run's provenance, but a list only offers what can be downloaded."""
    store = location(settings, run.org_id, run.id)
    keys = {stored.key for stored in store.list()}
    return [describe(row, store, settings) for row in rows if row.path + COMMIT_MARKER in keys]


def describe(row: Checkpoint, store: ObjectStore, settings: Settings) -> CheckpointOut:
    """A checkpoint as the API shows it: its files with download URLs and its commit marker."""
    files = [_with_url(FileEntry(**f), row, store, settings) for f in row.files]
    largest = max(files, key=lambda f: f.size, default=None)
    marker = _with_url(
        FileEntry(path=COMMIT_MARKER, size=0, sha256=row.sha256), row, store, settings
    )
    return CheckpointOut(
        run_id=row.run_id,
        step=row.step,
        path=row.path,
        attempt=row.attempt,
        size_bytes=row.size_bytes,
        created_at=row.created_at,
        metrics=row.metrics,
        sha256=row.sha256,
        files=files,
        download_url=(largest or marker).url,
        provenance_url=f"/v1/runs/{row.run_id}/provenance",
    )


def _with_url(
    entry: FileEntry, row: Checkpoint, store: ObjectStore, settings: Settings
) -> CheckpointFile:
    url = store.presigned_url(row.path + entry.path, settings.presigned_url_seconds)
    route = f"/v1/runs/{row.run_id}/checkpoints/{row.step}/files/{quote(entry.path)}"
    return CheckpointFile(**entry.model_dump(), url=url or route)


def open_file(
    session: Session, caller: Principal, settings: Settings, run_id: str, step: int, path: str
) -> Iterator[bytes]:
    """A registered checkpoint's file (or its COMMIT marker), for the API to stream."""
    run = get_run(session, caller, run_id)
    row = repository.at_step(session, run.id, step)
    known = {f["path"] for f in row.files} | {COMMIT_MARKER} if row else set()
    if row is None or path not in known:
        raise NotFound(f"Checkpoint {step} of run {run_id} has no file {path}.")
    return location(settings, run.org_id, run.id).iter_chunks(row.path + path)

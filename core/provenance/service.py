"""Provenance rules: freeze the record when a run first starts, sign it, verify a claim.

The frozen part (datasets pinned, image, spec hash, code reference, platform version) is written
once, in the launch transaction of the first attempt. `attempts` is added from the attempt
records whenever the record is read, and the whole is signed then; any change to any byte of the
record, or a checkpoint that is not the registered one, fails verification.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from importlib import metadata
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.checkpoints.repository import at_step, with_commit_sha
from core.datasets.pinning import pinned
from core.errors import NotFound
from core.models import Checkpoint, Run, RunAttempt, RunProvenance, utcnow
from core.provenance import signing
from core.provenance.schemas import CheckpointClaim, SignedRecord, Verdict, VerifyRequest
from core.runs.service import get_run
from core.settings import Settings
from core.tenants.schemas import Principal


def platform_version() -> str:
    try:
        return metadata.version("trainport-server")
    except metadata.PackageNotFoundError:
        return "unknown"


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def freeze(session: Session, run: Run) -> RunProvenance:
    """Write the run's frozen record once (the first launch); later calls return it as is."""
    existing = session.get(RunProvenance, run.id)
    if existing is not None:
        return existing
    spec = dict(run.spec)
    record = {
        "run_id": run.id,
        "organization_id": run.org_id,
        "project_id": run.project_id,
        "created_at": _when(run.created_at),
        "frozen_at": _when(utcnow()),
        "image": spec.get("image"),
        "recipe": spec.get("recipe"),
        "command": spec.get("command"),
        "spec_sha256": hashlib.sha256(signing.canonical(spec)).hexdigest(),
        "code": spec.get("code"),
        "datasets": {
            name: {"digest": pin.digest, "version": pin.version}
            for name, (pin, _) in pinned(session, run.id).items()
        },
        "platform_version": platform_version(),
    }
    frozen = RunProvenance(run_id=run.id, org_id=run.org_id, record=record, frozen_at=utcnow())
    session.add(frozen)
    session.flush()
    return frozen


def _attempts(session: Session, run_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(RunAttempt).where(RunAttempt.run_id == run_id).order_by(RunAttempt.attempt)
    ).all()
    return [_attempt_entry(session, row) for row in rows]


def _attempt_entry(session: Session, row: RunAttempt) -> dict[str, Any]:
    resumed: Checkpoint | None = None
    if row.resumed_from_step:
        resumed = at_step(session, row.run_id, row.resumed_from_step)
    return {
        "attempt": row.attempt,
        "cluster": row.cluster,
        "where": row.where,
        "hardware": {"gpus": row.gpus, "gpu_type": row.gpu_type, "cpu_slots": row.cpu_slots},
        "admitted_at": _when(row.admitted_at),
        "started_at": _when(row.started_at),
        "resumed_from_step": row.resumed_from_step,
        "resumed_checkpoint_sha256": resumed.sha256 if resumed else None,
    }


def signed_record(
    session: Session, caller: Principal, settings: Settings, run_id: str
) -> SignedRecord:
    run = get_run(session, caller, run_id)
    frozen = session.get(RunProvenance, run.id)
    if frozen is None:
        raise NotFound(f"Run {run_id} has not started yet; its provenance is not recorded.")
    record = {**frozen.record, "attempts": _attempts(session, run.id)}
    secret = settings.secret_key.get_secret_value()
    return SignedRecord(
        record=record,
        signature=signing.sign(secret, record),
        algorithm=signing.ALGORITHM,
        key_id=signing.key_id(secret),
    )


def public_keys(settings: Settings) -> list[signing.PublicKey]:
    """The keys that verify this server's records offline (one until a secret is rotated)."""
    return [signing.public_key(settings.secret_key.get_secret_value())]


def verify(
    session: Session, caller: Principal, settings: Settings, claim: VerifyRequest
) -> Verdict:
    secret = settings.secret_key.get_secret_value()
    algorithm = signing.algorithm_of(claim.signature, claim.algorithm)
    if algorithm not in (signing.ALGORITHM, signing.HMAC_ALGORITHM):
        return Verdict(valid=False, reason=f"unsupported algorithm {claim.algorithm!r}")
    # A key id must be ours *for that algorithm*: an HMAC key id on an Ed25519 claim is a forgery.
    ours = {
        signing.ALGORITHM: signing.key_id(secret),
        signing.HMAC_ALGORITHM: signing.hmac_key_id(secret),
    }
    if claim.key_id is not None and claim.key_id != ours[algorithm]:
        return Verdict(valid=False, reason="signed with another key than this server's")
    if not signing.signature_matches(secret, claim.record, claim.signature, algorithm):
        return Verdict(valid=False, reason="the signature does not match the record")
    if claim.checkpoint is not None:
        return _verify_checkpoint(session, caller, claim.record, claim.checkpoint)
    return Verdict(valid=True)


def _verify_checkpoint(
    session: Session, caller: Principal, record: dict[str, Any], claim: CheckpointClaim
) -> Verdict:
    run_id = str(record.get("run_id"))
    if record.get("organization_id") != caller.org_id:
        return Verdict(valid=False, reason="the record belongs to another organization")
    checkpoint = with_commit_sha(session, caller.org_id, run_id, claim.sha256.lower())
    if checkpoint is None:
        return Verdict(valid=False, reason=f"no checkpoint of run {run_id} has that COMMIT sha256")
    recorded = {f["path"]: f["sha256"] for f in checkpoint.files}
    for given in claim.files or []:
        if recorded.get(given.path) != given.sha256.lower():
            return Verdict(
                valid=False, reason=f"file {given.path} differs from checkpoint {checkpoint.step}"
            )
    return Verdict(valid=True)

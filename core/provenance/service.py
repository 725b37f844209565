"""Provenance rules: freeze the record when a run first starts, sign it, verify a claim.

The frozen part (record.py) is written once, unsigned, in the launch transaction of the first
attempt, by the process that launches (a worker). Only the API signs: `attempts` and
`checkpoints` are added whenever the record is read and the whole is signed then, with the
keyring's signing key (signing.py), which never needs to be on a worker. A record verifies under
any key of the keyring (retired keys included); any change to any byte of the record, a key this
server does not know, or a checkpoint that is not the registered one fails verification.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from core.checkpoints.repository import with_commit_sha
from core.errors import NotFound
from core.models import RunProvenance
from core.provenance import signing
from core.provenance.record import LIVE_KEYS, live_part
from core.provenance.record import freeze as freeze
from core.provenance.schemas import CheckpointClaim, SignedRecord, Verdict, VerifyRequest
from core.runs.service import get_run
from core.settings import Environment, Settings
from core.tenants.schemas import Principal

__all__ = ["check_signing_keys", "freeze", "keyring", "public_keys", "signed_record", "verify"]
log = logging.getLogger("trainport.provenance")


def keyring(settings: Settings) -> signing.Keyring:
    """The signing and verification keys the settings name."""
    return signing.keyring(
        settings.secret_key.get_secret_value(),
        settings.signing_key_file,
        tuple(settings.verification_key_files),
    )


def check_signing_keys(settings: Settings) -> None:
    """Load the keyring now (raises signing.KeyFileError naming the bad file), and say when
    production signs with the development derivation every platform process could compute."""
    keyring(settings)
    if settings.environment is Environment.PRODUCTION and settings.signing_key_file is None:
        log.warning(
            "provenance is signed with a key derived from TRAINPORT_SECRET_KEY, which workers "
            "also hold: set TRAINPORT_SIGNING_KEY_FILE on the API (python -m api.admin keys "
            "rotate --dir DIR)"
        )


def signed_record(
    session: Session, caller: Principal, settings: Settings, run_id: str
) -> SignedRecord:
    """The run's frozen provenance record with its live part, signed; 404 before it started."""
    run = get_run(session, caller, run_id)
    frozen = session.get(RunProvenance, run.id)
    if frozen is None:
        raise NotFound(f"Run {run_id} has not started yet; its provenance is not recorded.")
    record = {**frozen.record, **live_part(session, frozen)}
    ring = keyring(settings)
    return SignedRecord(
        record=record,
        signature=ring.sign(record),
        algorithm=signing.ALGORITHM,
        key_id=ring.signer_id,
    )


def public_keys(settings: Settings) -> list[signing.PublicKey]:
    """The keys that verify this server's records offline: the signing key's, then retired."""
    ring = keyring(settings)
    return sorted(ring.verifiers.values(), key=lambda k: k.key_id != ring.signer_id)


def verify(
    session: Session, caller: Principal, settings: Settings, claim: VerifyRequest
) -> Verdict:
    """Whether a signed record is authentic, by the algorithm its signature names."""
    algorithm = signing.algorithm_of(claim.signature, claim.algorithm)
    if algorithm == signing.HMAC_ALGORITHM:
        verdict = _verify_hmac(session, caller, settings, claim)
    elif algorithm == signing.ALGORITHM:
        verdict = _verify_ed25519(keyring(settings), claim)
    else:
        verdict = Verdict(valid=False, reason=f"unsupported algorithm {claim.algorithm!r}")
    if verdict.valid and claim.checkpoint is not None:
        return _verify_checkpoint(session, caller, claim.record, claim.checkpoint)
    return verdict


def _verify_ed25519(ring: signing.Keyring, claim: VerifyRequest) -> Verdict:
    known = ", ".join(sorted(ring.verifiers))
    if claim.key_id is not None and claim.key_id not in ring.verifiers:
        return Verdict(
            valid=False,
            reason=f"signed with key {claim.key_id!r}, which this server does not know "
            f"(it verifies with {known})",
        )
    signer = ring.matching_key(claim.record, claim.signature)
    if signer is None:
        return Verdict(
            valid=False,
            reason=f"the signature does not match the record under any key of this server "
            f"({known}): the record was altered or signed by an unknown key",
        )
    if claim.key_id is not None and signer != claim.key_id:
        return Verdict(valid=False, reason=f"the signature is key {signer}'s, not {claim.key_id}'s")
    return Verdict(valid=True)


def _verify_hmac(
    session: Session, caller: Principal, settings: Settings, claim: VerifyRequest
) -> Verdict:
    """Records from before Ed25519. Their key derives from TRAINPORT_SECRET_KEY, which every
    platform process holds, so a valid HMAC alone proves little: the record must also be the
    one this server stored for that run."""
    secret = settings.secret_key.get_secret_value()
    if claim.key_id is not None and claim.key_id != signing.hmac_key_id(secret):
        return Verdict(
            valid=False, reason=f"signed with key {claim.key_id!r}, which this server does not know"
        )
    if not signing.hmac_matches(secret, claim.record, claim.signature):
        return Verdict(valid=False, reason="the signature does not match the record")
    frozen = session.get(RunProvenance, str(claim.record.get("run_id")))
    claimed = {k: v for k, v in claim.record.items() if k not in LIVE_KEYS}
    if frozen is None or frozen.org_id != caller.org_id or frozen.record != claimed:
        return Verdict(
            valid=False,
            reason="an hmac-sha256 record verifies only as this server stored it, and this one "
            "differs",
        )
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

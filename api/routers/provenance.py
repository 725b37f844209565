"""`/v1/runs/{id}/provenance`, `/v1/provenance/verify` and `/v1/provenance/keys`: the signed
record, checking one here, and the public keys that check one anywhere."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Caller, SessionDep, SettingsDep
from api.routers.runs import RunId
from api.routing import UnitOfWorkRoute
from core.provenance import service
from core.provenance.schemas import (
    SignedRecord,
    Verdict,
    VerifyingKey,
    VerifyingKeys,
    VerifyRequest,
)

router = APIRouter(tags=["provenance"], route_class=UnitOfWorkRoute)


@router.get("/v1/runs/{run_id}/provenance", response_model=SignedRecord)
def get_provenance(
    run_id: RunId, caller: Caller, session: SessionDep, settings: SettingsDep
) -> SignedRecord:
    """What the run was made from and where each attempt ran, signed by the server."""
    return service.signed_record(session, caller, settings, run_id)


@router.post("/v1/provenance/verify", response_model=Verdict)
def verify_provenance(
    body: VerifyRequest, caller: Caller, session: SessionDep, settings: SettingsDep
) -> Verdict:
    """Whether a record is as this server signed it and, if given, the checkpoint is its run's."""
    return service.verify(session, caller, settings, body)


@router.get("/v1/provenance/keys", response_model=VerifyingKeys)
def provenance_keys(caller: Caller, settings: SettingsDep) -> VerifyingKeys:
    """The Ed25519 public keys that verify this server's provenance records offline: the one
    it signs with now and every retired one it still verifies with."""
    signer = service.keyring(settings).signer_id
    return VerifyingKeys(
        keys=[
            VerifyingKey(
                key_id=k.key_id,
                algorithm=k.algorithm,
                public_key=k.base64,
                public_key_pem=k.pem,
                status="signing" if k.key_id == signer else "retired",
            )
            for k in service.public_keys(settings)
        ]
    )

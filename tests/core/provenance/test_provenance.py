"""Provenance: the record frozen at the first launch, signed; verification catches any tampering."""

from __future__ import annotations

import base64
import copy
import hashlib
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi.testclient import TestClient

from api.app_state import app_sessionmaker
from core.db import session_scope
from core.models import RunProvenance
from core.provenance.signing import canonical, hmac_key_id, hmac_sign
from core.runs.attempts import AttemptOutcome
from tests.factories import Tenant, app_of, make_tenant
from tests.support.checkpointing import commit_files
from tests.support.training import (
    SECRET,
    create_dataset,
    end_attempt,
    start,
    submit,
    upload,
)

CODE = {"repo": "https://git.example.com/ml/train.git", "commit": "0123456789abcdef"}


def _started_with_checkpoint(api: TestClient, org: Tenant) -> tuple[str, dict[str, Any], bytes]:
    create_dataset(api, org, "corpus")
    _, version = upload(api, org, "corpus", {"a.txt": b"text"})
    run_id = submit(
        api,
        org,
        image="python:3.11",
        data={"datasets": ["corpus"]},
        code=CODE,
        scheduling={"max_retries": 1},
    )
    run = start(api, run_id)
    weights = b"weights" * 100
    body = commit_files(run.env["TRAINPORT_CHECKPOINT_URI"], 50, {"model.bin": weights})
    checkpoint = api.post(f"/v1/runs/{run_id}/checkpoints", json=body, headers=run.headers).json()
    api.post(f"/v1/runs/{run_id}/heartbeat", json={"step": 60}, headers=run.headers)
    end_attempt(api, run_id, AttemptOutcome.SYSTEM_FAILED)
    second = start(api, run_id)
    beat = {"step": 50, "resumed_from_step": 50}
    api.post(f"/v1/runs/{run_id}/heartbeat", json=beat, headers=second.headers)
    assert version["digest"]
    return run_id, checkpoint, weights


def _verify(api: TestClient, org: Tenant, document: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {"record": document["record"], "signature": document["signature"], **extra}
    response = api.post("/v1/provenance/verify", json=body, headers=org.headers)
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()
    return verdict


def test_the_record_names_data_image_spec_code_and_attempts(api: TestClient, org: Tenant) -> None:
    run_id, checkpoint, _ = _started_with_checkpoint(api, org)
    document = api.get(f"/v1/runs/{run_id}/provenance", headers=org.headers).json()
    record = document["record"]
    dataset = api.get("/v1/datasets/corpus", headers=org.headers).json()["versions"][0]
    assert (record["schema_version"], record["run_id"]) == (2, run_id)
    observed = {"source": "observed", "digest": dataset["digest"], "version": 1}
    assert record["datasets"] == {"corpus": observed}
    assert record["spec"]["source"] == "reported"
    assert record["spec"]["image"] == "python:3.11"
    assert len(record["spec"]["sha256"]) == 64
    assert record["code"] == {"source": "reported", **CODE, "dirty": None, "shipped": None}
    assert record["platform_version"]
    assert [a["attempt"] for a in record["attempts"]] == [1, 2]
    resumed = {"source": "reported", "from_step": 50, "checkpoint_sha256": checkpoint["sha256"]}
    assert record["attempts"][1]["resumed"] == resumed
    assert (document["algorithm"], document["key_id"][:8]) == ("ed25519", "ed25519-")


def test_a_stored_version_1_record_is_still_served_and_verifies(
    api: TestClient, org: Tenant
) -> None:
    run_id, checkpoint, _ = _started_with_checkpoint(api, org)
    app = app_of(api)
    version_1 = {
        "run_id": run_id,
        "organization_id": org.org_id,
        "image": "python:3.11",
        "code": CODE,
        "spec_sha256": "0" * 64,
        "datasets": {},
        "platform_version": "0.1.0",
    }
    with session_scope(app_sessionmaker(app)) as session:
        frozen = session.get(RunProvenance, run_id)
        assert frozen is not None
        frozen.record = version_1
    document = api.get(f"/v1/runs/{run_id}/provenance", headers=org.headers).json()
    record = document["record"]
    assert "schema_version" not in record
    assert "checkpoints" not in record
    assert record["attempts"][1]["resumed_checkpoint_sha256"] == checkpoint["sha256"]
    assert _verify(api, org, document) == {"valid": True, "reason": None}
    legacy = {"record": record, "signature": hmac_sign(SECRET, record)}
    assert _verify(api, org, legacy) == {"valid": True, "reason": None}


def test_a_genuine_record_and_checkpoint_verify(api: TestClient, org: Tenant) -> None:
    run_id, checkpoint, weights = _started_with_checkpoint(api, org)
    document = api.get(f"/v1/runs/{run_id}/provenance", headers=org.headers).json()
    assert _verify(api, org, document) == {"valid": True, "reason": None}
    files = [{"path": "model.bin", "sha256": hashlib.sha256(weights).hexdigest()}]
    claim = {"sha256": checkpoint["sha256"], "files": files}
    assert _verify(api, org, document, checkpoint=claim)["valid"] is True


def test_tampering_with_any_field_fails_verification(api: TestClient, org: Tenant) -> None:
    run_id, _, _ = _started_with_checkpoint(api, org)
    document = api.get(f"/v1/runs/{run_id}/provenance", headers=org.headers).json()
    edits = [
        ("spec", {**document["record"]["spec"], "image": "python:3.12"}),
        ("spec", {**document["record"]["spec"], "sha256": "0" * 64}),
        ("platform_version", "9.9.9"),
        ("datasets", {"corpus": {"digest": "sha256:" + "1" * 64, "version": 1}}),
        ("code", None),
        ("checkpoints", []),
        ("extra", True),
    ]
    for field, value in edits:
        forged = copy.deepcopy(document)
        forged["record"][field] = value
        verdict = _verify(api, org, forged)
        assert verdict["valid"] is False, field
        assert "signature" in verdict["reason"]
    forged = copy.deepcopy(document)
    forged["record"]["attempts"][0]["hardware"]["gpus"] = 8
    assert _verify(api, org, forged)["valid"] is False
    forged = {**document, "signature": document["signature"][:-1] + "0"}
    if forged["signature"] == document["signature"]:
        forged["signature"] = document["signature"][:-1] + "1"
    assert _verify(api, org, forged)["valid"] is False


def test_a_tampered_checkpoint_fails_verification(api: TestClient, org: Tenant) -> None:
    run_id, checkpoint, weights = _started_with_checkpoint(api, org)
    document = api.get(f"/v1/runs/{run_id}/provenance", headers=org.headers).json()
    flipped = bytes([weights[0] ^ 1]) + weights[1:]
    files = [{"path": "model.bin", "sha256": hashlib.sha256(flipped).hexdigest()}]
    verdict = _verify(
        api, org, document, checkpoint={"sha256": checkpoint["sha256"], "files": files}
    )
    assert verdict["valid"] is False
    assert "model.bin" in verdict["reason"]
    other_commit = {"sha256": hashlib.sha256(b"another COMMIT").hexdigest()}
    assert _verify(api, org, document, checkpoint=other_commit)["valid"] is False


def test_a_run_that_never_started_has_no_record_and_others_cannot_read_it(
    api: TestClient, org: Tenant
) -> None:
    waiting = submit(api, org)
    assert api.get(f"/v1/runs/{waiting}/provenance", headers=org.headers).status_code == 404
    run_id, _, _ = _started_with_checkpoint(api, org)
    intruder = make_tenant(api)
    assert api.get(f"/v1/runs/{run_id}/provenance", headers=intruder.headers).status_code == 404


def test_anyone_verifies_a_record_offline_with_the_published_public_key(
    api: TestClient, org: Tenant
) -> None:
    run_id, _, _ = _started_with_checkpoint(api, org)
    document = api.get(f"/v1/runs/{run_id}/provenance", headers=org.headers).json()
    [key] = api.get("/v1/provenance/keys", headers=org.headers).json()["keys"]
    assert (key["key_id"], key["algorithm"]) == (document["key_id"], "ed25519")
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
    pem = load_pem_public_key(key["public_key_pem"].encode())
    assert isinstance(pem, Ed25519PublicKey)
    signature = bytes.fromhex(document["signature"])
    for verifier in (public, pem):
        verifier.verify(signature, canonical(document["record"]))  # raises when it does not match
    forged = {**document["record"], "platform_version": "9.9.9"}
    with pytest.raises(InvalidSignature):
        public.verify(signature, canonical(forged))


def test_a_record_signed_before_ed25519_still_verifies(api: TestClient, org: Tenant) -> None:
    run_id, _, _ = _started_with_checkpoint(api, org)
    record = api.get(f"/v1/runs/{run_id}/provenance", headers=org.headers).json()["record"]
    legacy = {"record": record, "signature": hmac_sign(SECRET, record)}
    assert _verify(api, org, legacy) == {"valid": True, "reason": None}
    labels = {"algorithm": "hmac-sha256", "key_id": hmac_key_id(SECRET)}
    assert _verify(api, org, legacy, **labels)["valid"] is True
    tampered = {**legacy, "record": {**record, "platform_version": "evil"}}
    assert _verify(api, org, tampered, **labels)["valid"] is False
    assert _verify(api, org, legacy, algorithm="ed25519")["valid"] is False


def test_a_record_claiming_another_key_or_algorithm_is_refused_with_a_reason(
    api: TestClient, org: Tenant
) -> None:
    run_id, _, _ = _started_with_checkpoint(api, org)
    document = api.get(f"/v1/runs/{run_id}/provenance", headers=org.headers).json()
    other_key = _verify(api, org, document, key_id="ed25519-0000000000000000")
    assert other_key["valid"] is False
    assert "'ed25519-0000000000000000', which this server does not know" in other_key["reason"]
    assert document["key_id"] in other_key["reason"]  # and it names the keys it does know
    crossed = _verify(api, org, document, algorithm="ed25519", key_id=hmac_key_id(SECRET))
    assert crossed["valid"] is False
    assert "which this server does not know" in crossed["reason"]
    echoed = _verify(api, org, document, algorithm="ed25519", key_id=document["key_id"])
    assert echoed == {"valid": True, "reason": None}
    other_algorithm = _verify(api, org, document, algorithm="rsa-pss")
    assert other_algorithm["valid"] is False
    assert "unsupported algorithm" in other_algorithm["reason"]

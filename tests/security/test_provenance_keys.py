"""Provenance keys (issue 12): the signing key lives in a file only the API reads, has an id,
rotates, and retired keys still verify; nothing derived from the platform's shared secret (the
run-token key's root) signs a record this server accepts."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.app import create_app
from core.provenance.signing import (
    KeyFileError,
    canonical,
    derived_signing_key,
    hmac_sign,
    load_private_key,
)
from core.runs.attempts import AttemptOutcome
from core.settings import Settings
from tests.security.provenance_fixtures import app_with, provenance, started_run, verdict
from tests.support.training import SECRET, end_attempt, start


def _rotate(folder: Path, **env: str) -> str:
    """`python -m api.admin keys rotate --dir folder`, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "api.admin", "keys", "rotate", "--dir", str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, "TRAINPORT_SECRET_KEY": SECRET, **env},
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_rotate_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    out = _rotate(tmp_path / "keys")
    key = tmp_path / "keys" / "signing-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in key.read_bytes()
    assert "new signing key ed25519-" in out
    # The key it replaced (derived from the non-default secret) is kept, public only.
    [retired] = (tmp_path / "keys").glob("retired-*.pem")
    assert b"PUBLIC KEY" in retired.read_bytes()
    assert b"PRIVATE" not in retired.read_bytes()


def test_the_key_file_signs_and_every_key_is_listed_with_its_id(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "keys"
    _rotate(folder)
    with app_with(postgres_url, tmp_path, signing_key_file=folder / "signing-key.pem") as api:
        org, run_id = started_run(api)
        document = provenance(api, org, run_id)
        keys = api.get("/v1/provenance/keys", headers=org.headers).json()["keys"]
    derived = derived_signing_key(SECRET).public_key().public_bytes_raw()
    derived_id = "ed25519-" + hashlib.sha256(derived).hexdigest()[:16]
    assert document["key_id"] != derived_id  # the file's key signs, not the secret's
    assert [(k["key_id"], k["status"]) for k in keys] == [(document["key_id"], "signing")]


def test_records_signed_before_a_rotation_still_verify(postgres_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    _rotate(folder)
    first = {"signing_key_file": folder / "signing-key.pem"}
    with app_with(postgres_url, tmp_path / "a", **first) as api:
        org, run_id = started_run(api)
        old = provenance(api, org, run_id)
    _rotate(folder)
    rotated = {**first, "verification_key_files": [folder]}
    with app_with(postgres_url, tmp_path / "b", **rotated) as api:
        new = provenance(api, org, run_id)
        keys = api.get("/v1/provenance/keys", headers=org.headers).json()["keys"]
        assert new["key_id"] != old["key_id"]
        statuses = {k["key_id"]: k["status"] for k in keys}
        assert statuses[new["key_id"]] == "signing"
        assert statuses[old["key_id"]] == "retired"
        for document in (old, new):
            body = {k: document[k] for k in ("record", "signature", "algorithm", "key_id")}
            assert verdict(api, org, body) == {"valid": True, "reason": None}
        forged = copy.deepcopy(old)
        forged["record"]["run_id"] = "run_forged"
        assert (
            verdict(api, org, {"record": forged["record"], "signature": old["signature"]})["valid"]
            is False
        )


def test_a_record_signed_by_an_unknown_key_is_invalid_and_says_so(
    postgres_url: str, tmp_path: Path
) -> None:
    with app_with(postgres_url, tmp_path) as api:
        org, run_id = started_run(api)
        record = provenance(api, org, run_id)["record"]
        stranger = Ed25519PrivateKey.generate()
        signature = stranger.sign(canonical(record)).hex()
        unnamed = verdict(api, org, {"record": record, "signature": signature})
        assert unnamed["valid"] is False
        assert "unknown key" in unnamed["reason"]
        named = verdict(
            api,
            org,
            {"record": record, "signature": signature, "key_id": "ed25519-00000000deadbeef"},
        )
        assert named["valid"] is False
        assert "ed25519-00000000deadbeef" in named["reason"]
        assert "does not know" in named["reason"]


def test_the_shared_secret_cannot_sign_provenance_once_a_key_file_is_set(
    postgres_url: str, tmp_path: Path
) -> None:
    """Workers hold TRAINPORT_SECRET_KEY (they mint run tokens): whatever it derives — the
    development Ed25519 key, the legacy HMAC key, the run-token MAC key — must not make a
    forged record verify."""
    folder = tmp_path / "keys"
    _rotate(folder)
    with app_with(postgres_url, tmp_path, signing_key_file=folder / "signing-key.pem") as api:
        org, run_id = started_run(api)
        genuine = provenance(api, org, run_id)["record"]
        forged = {**genuine, "platform_version": "forged"}
        by_derived_key = derived_signing_key(SECRET).sign(canonical(forged)).hex()
        assert verdict(api, org, {"record": forged, "signature": by_derived_key})["valid"] is False
        legacy = verdict(api, org, {"record": forged, "signature": hmac_sign(SECRET, forged)})
        assert legacy["valid"] is False
        assert "as this server stored it" in legacy["reason"]
        run_token_key = hmac.new(SECRET.encode(), b"trainport/run-token/v1", "sha256").digest()
        by_token_key = hmac.new(run_token_key, canonical(forged), "sha256").hexdigest()
        assert verdict(api, org, {"record": forged, "signature": by_token_key})["valid"] is False


def test_the_launch_environment_holds_no_signing_key(postgres_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    _rotate(folder)
    key_file = folder / "signing-key.pem"
    with app_with(postgres_url, tmp_path, signing_key_file=key_file) as api:
        _org, run_id = started_run(api)
        end_attempt(api, run_id, AttemptOutcome.SYSTEM_FAILED)
        env = start(api, run_id).env
    pem = key_file.read_text()
    body = "".join(pem.strip().splitlines()[1:-1])
    for value in env.values():
        assert str(folder) not in value
        assert body not in value


def test_an_api_whose_key_file_is_not_an_ed25519_key_refuses_to_start(
    postgres_url: str, tmp_path: Path
) -> None:
    wrong = tmp_path / "signing-key.pem"
    wrong.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(
        KeyFileError, match=r"signing-key\.pem is not an unencrypted PEM private key"
    ):
        create_app(Settings(database_url=postgres_url, signing_key_file=wrong))
    with pytest.raises(KeyFileError, match="cannot read key file"):
        create_app(Settings(database_url=postgres_url, signing_key_file=tmp_path / "absent.pem"))


def test_the_provenance_keys_cannot_mint_a_run_token(postgres_url: str, tmp_path: Path) -> None:
    """The other direction: whoever holds the provenance keys (the legacy HMAC key, the signing
    key) cannot speak for a run."""
    folder = tmp_path / "keys"
    _rotate(folder)
    key_file = folder / "signing-key.pem"
    with app_with(postgres_url, tmp_path, signing_key_file=key_file) as api:
        _, run_id = started_run(api)
        subject = f"{run_id}:1".encode()
        provenance_hmac = hmac.new(SECRET.encode(), b"trainport/provenance/v1", "sha256").digest()
        signing_key = load_private_key(key_file)
        forgeries = [
            hmac.new(provenance_hmac, subject, "sha256").digest(),
            signing_key.sign(subject),
        ]
        for signature in forgeries:
            token = f"tpr_{_b64(subject)}.{_b64(signature)}"
            headers = {"Authorization": f"Bearer {token}"}
            answer = api.post(f"/v1/runs/{run_id}/heartbeat", json={"step": 1}, headers=headers)
            assert answer.status_code == 401, answer.text


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

"""`client.provenance.verify(...)`: ask the server whether a provenance record is as it signed
it and, optionally, whether a checkpoint (its COMMIT digest and file digests) belongs to it.

`client.provenance.keys()` lists the server's Ed25519 public keys, and `verify_offline(record,
key)` checks a record's signature with one, here, without the server (it needs the optional
`cryptography` package: `pip install 'trainport[verify]'`).

`checkpoint_claim(folder)` builds that claim from a checkpoint folder on disk (one downloaded
with `runs.download_checkpoint`, or the run's own), hashing the files as they are now, so a
changed byte anywhere makes the verdict invalid.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from trainport._http import APIRequest
from trainport.resources._base import AsyncResource, SyncResource
from trainport.training_models import Provenance, Verdict

COMMIT = "COMMIT"


def _sha256(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def checkpoint_claim(folder: str | Path) -> dict[str, Any]:
    """`{"sha256": <COMMIT's sha256>, "files": [{"path", "sha256"}]}` for a local checkpoint
    folder: the COMMIT marker as it is, and every file it lists hashed from disk."""
    root = Path(folder)
    marker = (root / COMMIT).read_bytes()
    listed = json.loads(marker).get("files", [])
    files = [{"path": f["path"], "sha256": _sha256(root / f["path"])} for f in listed]
    return {"sha256": hashlib.sha256(marker).hexdigest(), "files": files}


def _verify(
    record: Provenance | dict[str, Any], signature: str | None, checkpoint: Any
) -> APIRequest:
    if isinstance(record, Provenance):
        body: dict[str, Any] = {
            "record": record.record,
            "signature": record.signature,
            "algorithm": record.algorithm,
            "key_id": record.key_id,
        }
    else:
        body = {"record": record, "signature": signature}
    if isinstance(checkpoint, str | Path):
        checkpoint = checkpoint_claim(checkpoint)
    if checkpoint is not None:
        body["checkpoint"] = checkpoint
    return APIRequest("POST", "/v1/provenance/verify", json=body)


def canonical(document: Any) -> bytes:
    """The bytes the server signs: keys sorted, no spaces, UTF-8 unescaped."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def verify_offline(provenance: Provenance, public_key: str) -> bool:
    """Whether `provenance` carries a valid Ed25519 signature by `public_key` (base64, as
    `keys()` lists it). Checks the record only; a checkpoint's files need `verify`."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as exc:  # an optional extra: say how to get it
        raise ImportError("verify_offline needs `pip install 'trainport[verify]'`") from exc
    if provenance.algorithm != "ed25519":
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(bytes.fromhex(provenance.signature), canonical(provenance.record))
    except (InvalidSignature, ValueError):
        return False
    return True


_KEYS = APIRequest("GET", "/v1/provenance/keys")


class ProvenanceResource(SyncResource):
    def keys(self) -> list[dict[str, str]]:
        """The server's public keys: `key_id`, `algorithm`, `public_key` (base64), PEM."""
        keys: list[dict[str, str]] = self._http.json(_KEYS)["keys"]
        return keys

    def verify(
        self,
        record: Provenance | dict[str, Any],
        *,
        signature: str | None = None,
        checkpoint: str | Path | dict[str, Any] | None = None,
    ) -> Verdict:
        """Whether `record` (a `Provenance`, or a record dict with `signature=`) is as the
        server signed it and, given a checkpoint folder or claim, whether it matches."""
        return Verdict.model_validate(self._http.json(_verify(record, signature, checkpoint)))


class AsyncProvenanceResource(AsyncResource):
    async def keys(self) -> list[dict[str, str]]:
        """The server's public keys: `key_id`, `algorithm`, `public_key` (base64), PEM."""
        keys: list[dict[str, str]] = (await self._http.json(_KEYS))["keys"]
        return keys

    async def verify(
        self,
        record: Provenance | dict[str, Any],
        *,
        signature: str | None = None,
        checkpoint: str | Path | dict[str, Any] | None = None,
    ) -> Verdict:
        """Whether `record` is as the server signed it (and the checkpoint, if given, matches)."""
        call = _verify(record, signature, checkpoint)
        return Verdict.model_validate(await self._http.json(call))

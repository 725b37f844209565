"""The provenance record's layout (schema version 2): each fact says who vouches for it.

Every fact that is an object carries `source`: `observed` when the platform saw it itself
(dataset digests pinned at admission, the attempt's cluster, node and grant from the inventory,
the image digest the kubelet reported, checkpoint digests the API computed from the stored
object), `reported` when it is the run's or the spec's word (the spec as submitted, `code.repo`
and `code.commit`, the step a run says it resumed from, file digests too large to re-hash).
The top-level scalars (`run_id`, `created_at`, `platform_version`, ...) are the platform's own
bookkeeping. The frozen part is written once, at the first launch, by whichever process
launches (a worker); it holds no signature. `attempts` and `checkpoints` are added whenever the
record is read, and only the API signs (see service.py). Version 1 records (no
`schema_version`: `image`, `code`, `command` as the spec named them) still verify.
See docs/runtime-api.md, "Provenance".
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from importlib import metadata
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.checkpoints.repository import at_step, of_run
from core.code.snapshots import ShippedCode
from core.datasets.pinning import pinned
from core.executor_kinds import ExecutorKind
from core.models import Checkpoint, Cluster, Run, RunAttempt, RunOutput, RunProvenance, utcnow
from core.outputs.service import of_run as outputs_of_run
from core.provenance.signing import canonical

SCHEMA_VERSION = 2
OBSERVED = "observed"
REPORTED = "reported"
LOCAL_IMAGE_UNUSED = (
    "the local executor runs the command as processes on the host: no image was pulled or run"
)
IMAGE_NOT_YET_SEEN = "the cluster has not reported the image it ran (yet)"
LIVE_KEYS = ("attempts", "checkpoints", "outputs")  # added at each read, never frozen


@functools.cache  # it scans every installed distribution; an upgrade restarts the process
def platform_version() -> str:
    try:
        return metadata.version("trainport-server")
    except metadata.PackageNotFoundError:
        return "unknown"


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def freeze(session: Session, run: Run, code: ShippedCode | None = None) -> RunProvenance:
    """Write the run's frozen record once (the first launch); later calls return it as is.

    `code`: the snapshot the launching worker ships to the run (its `workdir`, or the commit of
    its `git` source it fetched and packed). Only unsigned facts are written here: the
    launching process need not hold the signing key.
    """
    existing = session.get(RunProvenance, run.id)
    if existing is not None:
        return existing
    record = _frozen(session, run, code)
    frozen = RunProvenance(run_id=run.id, org_id=run.org_id, record=record, frozen_at=utcnow())
    session.add(frozen)
    session.flush()
    return frozen


def _frozen(session: Session, run: Run, code: ShippedCode | None) -> dict[str, Any]:
    spec = dict(run.spec)
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run.id,
        "organization_id": run.org_id,
        "project_id": run.project_id,
        "created_at": _when(run.created_at),
        "frozen_at": _when(utcnow()),
        "platform_version": platform_version(),
        "spec": {
            "source": REPORTED,
            "sha256": hashlib.sha256(canonical(spec)).hexdigest(),
            "image": spec.get("image"),
            "recipe": spec.get("recipe"),
            "command": spec.get("command"),
        },
        "code": _code(spec, code),
        "datasets": {
            name: {"source": OBSERVED, "digest": pin.digest, "version": pin.version}
            for name, (pin, _) in pinned(session, run).items()
        },
    } | ({"cloned_from": run.cloned_from} if run.cloned_from else {})


def _code(spec: dict[str, Any], shipped: ShippedCode | None) -> dict[str, Any]:
    """`repo`, `commit` and `dirty` are the spec's `code` claim, the submitter's word (the CLI
    fills it when it packs a git working tree): `reported`. `shipped` is the code the platform
    itself shipped, `observed`: the snapshot digest it computed, and for a `git` source the
    URL and the commit it fetched."""
    named = spec.get("code") or {}
    return {
        "source": REPORTED,
        "repo": named.get("repo"),
        "commit": named.get("commit"),
        "dirty": named.get("dirty"),
        "shipped": shipped.record() if shipped else None,
    }


def shipped_digest(frozen: RunProvenance | None) -> str | None:
    """The snapshot a run's first launch shipped: every later attempt runs the same one."""
    if frozen is None:
        return None
    shipped = (frozen.record.get("code") or {}).get("shipped") or {}
    digest = shipped.get("digest")
    return str(digest) if digest else None


def live_part(session: Session, frozen: RunProvenance) -> dict[str, Any]:
    """The part added at every read: each attempt and each registered checkpoint (a version 1
    record keeps its own attempt layout and has no checkpoints)."""
    if "schema_version" not in frozen.record:
        rows = _attempt_rows(session, frozen.run_id)
        return {"attempts": [_attempt_entry_v1(session, row) for row in rows]}
    return {
        "attempts": _attempts(session, frozen.run_id),
        "checkpoints": _checkpoints(session, frozen.run_id),
        "outputs": [_output_entry(row) for row in outputs_of_run(session, frozen.run_id)],
    }


def _attempt_rows(session: Session, run_id: str) -> list[RunAttempt]:
    query = select(RunAttempt).where(RunAttempt.run_id == run_id).order_by(RunAttempt.attempt)
    return list(session.scalars(query).all())


def _attempt_entry_v1(session: Session, row: RunAttempt) -> dict[str, Any]:
    resumed = at_step(session, row.run_id, row.resumed_from_step or 0)
    return {
        "attempt": row.attempt,
        "cluster": row.cluster,
        "where": row.where,
        "hardware": {"gpus": row.gpus, "gpu_type": row.gpu_type, "cpu_slots": row.cpu_slots},
        "admitted_at": _when(row.admitted_at),
        "started_at": _when(row.started_at),
        "resumed_from_step": row.resumed_from_step,
        "resumed_checkpoint_sha256": resumed.sha256 if resumed and row.resumed_from_step else None,
    }


def _attempts(session: Session, run_id: str) -> list[dict[str, Any]]:
    rows = _attempt_rows(session, run_id)
    kinds = {name: kind for name, kind in session.execute(select(Cluster.name, Cluster.executor))}
    return [_attempt_entry(session, row, kinds.get(row.cluster, row.cluster)) for row in rows]


def _attempt_entry(session: Session, row: RunAttempt, executor: str) -> dict[str, Any]:
    resumed: dict[str, Any] | None = None
    if row.resumed_from_step:
        checkpoint = at_step(session, row.run_id, row.resumed_from_step)
        resumed = {
            "source": REPORTED,
            "from_step": row.resumed_from_step,
            "checkpoint_sha256": checkpoint.sha256 if checkpoint else None,
        }
    return {
        "attempt": row.attempt,
        "source": OBSERVED,
        "cluster": row.cluster,
        "executor": executor,
        "where": row.where,
        "hardware": {"gpus": row.gpus, "gpu_type": row.gpu_type, "cpu_slots": row.cpu_slots},
        "image": attempt_image(executor, row.image_digest),
        "admitted_at": _when(row.admitted_at),
        "started_at": _when(row.started_at),
        "resumed": resumed,
    }


def attempt_image(executor: str, digest: str | None) -> dict[str, Any]:
    """What image the attempt ran, as the platform knows it."""
    if executor == ExecutorKind.LOCAL:
        return {"source": OBSERVED, "used": False, "reason": LOCAL_IMAGE_UNUSED}
    if digest:
        return {"source": OBSERVED, "used": True, "digest": digest}
    return {"source": REPORTED, "used": True, "digest": None, "reason": IMAGE_NOT_YET_SEEN}


def _output_entry(row: RunOutput) -> dict[str, Any]:
    """The platform hashed each output file itself as it uploaded it."""
    return {
        "attempt": row.attempt,
        "path": row.path,
        "source": OBSERVED,
        "size": row.size_bytes,
        "sha256": row.sha256,
    }


def _checkpoints(session: Session, run_id: str) -> list[dict[str, Any]]:
    return [_checkpoint_entry(row) for row in reversed(of_run(session, run_id))]


def _checkpoint_entry(row: Checkpoint) -> dict[str, Any]:
    hashed = [f for f in row.files if f.get("observed")]
    return {
        "step": row.step,
        "attempt": row.attempt,
        # The API read the COMMIT marker back from storage and hashed it itself.
        "commit_sha256": {"source": OBSERVED, "sha256": row.sha256},
        "files": {
            "source": OBSERVED if len(hashed) == len(row.files) else REPORTED,
            "count": len(row.files),
            "hashed_by_the_platform": len(hashed),
        },
    }

"""A run's own storage, reached with its run token: presigned URLs and listings, scoped.

A run's code holds no storage credential. It asks the API, with its run token, for
short-lived presigned URLs of single objects, and the API lists with its own credentials. Keys
are relative to the run's storage root, which has two parts:

- `checkpoints/<path>`: the run's checkpoint location (core/checkpoints/service.py `location`),
  shared by its attempts: GET, PUT and DELETE;
- `datasets/<name>/<path>`: a file of the dataset version pinned for the run under that name
  (core/datasets/pinning.py): GET only, and only paths of the version's manifest;
- `code/<digest>`: the run's own code snapshot (its `workdir`, or the snapshot its first launch
  shipped for its `git` source): GET only; a Kubernetes init container fetches it this way;
- `leftovers/<path>`: what the token's attempt leaves when its trainer exits (its `outputs`,
  TensorBoard event files, loose checkpoint files), at `runs/<run>/leftovers/attempt-<n>/`:
  PUT only. A pod's wrapper (core/outputs/pod_upload.py) uploads there, and the worker that
  settles the attempt keeps what it finds (workers/pod_leftovers.py).

Anything else (another run's prefix, another org's, `..`, an absolute key) is refused with 403
`outside_run_storage` before any store is touched. Only the run's own token, of an attempt that
has not ended, may call: an API key gets 403 `forbidden` (people read checkpoints through the
checkpoint routes), another run's token 404, an ended attempt's token 401.

On local storage nothing can be presigned (409 `local_storage`): the run reads and writes the
`file://` paths of its environment, which the local executor mounts for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core.checkpoints.service import location
from core.code import snapshots
from core.datasets.pinning import pinned
from core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TrainportError,
)
from core.models import Run, RunProvenance
from core.provenance.record import shipped_digest
from core.run_storage.schemas import (
    MultipartOut,
    PresignedOperation,
    PresignOperation,
    PresignOut,
    PresignRequest,
    StorageListing,
    StorageMethod,
    StoredObjectOut,
)
from core.runs.service import get_run
from core.settings import Settings
from core.storage.backends import org_store, store_for_uri
from core.storage.base import ObjectStore
from core.storage.s3 import S3ObjectStore
from core.tenants.schemas import Principal

CHECKPOINTS = "checkpoints/"
DATASETS = "datasets/"
CODE = "code/"
LEFTOVERS = "leftovers/"
SCOPE_HINT = (
    "keys start with checkpoints/ (this run's checkpoints), datasets/<pinned name>/, "
    "code/<this run's snapshot digest> or leftovers/ (this attempt's files, write-only)"
)


@dataclass(frozen=True)
class PinnedFiles:
    """A pinned dataset version: where its files are, and its manifest (path → size)."""

    store: ObjectStore
    sizes: dict[str, int]


@dataclass(frozen=True)
class RunStorage:
    """What one run may reach; loaded in a short transaction, with no storage I/O."""

    checkpoints: ObjectStore
    datasets: dict[str, PinnedFiles]
    code: dict[str, tuple[ObjectStore, str]] = field(default_factory=dict)  # digest -> its object
    leftovers: ObjectStore | None = None  # the token's attempt's (`leftovers_location`)


@dataclass(frozen=True)
class Target:
    """A key resolved inside the run's storage: its store, the key relative to it, and the
    pinned dataset it belongs to (None for checkpoints)."""

    store: ObjectStore
    key: str
    dataset: PinnedFiles | None


def run_storage(session: Session, caller: Principal, settings: Settings, run_id: str) -> RunStorage:
    """The caller's run's storage; only that run's token, while its attempt lasts (a token
    whose attempt has ended is refused by `run_tokens.authenticate`, before any route runs)."""
    # A run it cannot see answers 404 first (another org's key, another run's token).
    run = get_run(session, caller, run_id)
    if caller.run_id is None:
        raise Forbidden(
            "A run's storage is reached with that run's own token (TRAINPORT_RUN_TOKEN); "
            f"read its checkpoints with GET /v1/runs/{run_id}/checkpoints."
        )
    datasets = {
        name: PinnedFiles(
            store_for_uri(settings, run.org_id, version.uri, version.storage_key),
            {str(f["path"]): int(f["size"]) for f in version.files},
        )
        for name, (_, version) in pinned(session, run).items()
    }
    attempt = caller.attempt or run.attempt
    return RunStorage(
        location(settings, run.org_id, run.id),
        datasets,
        _code(session, settings, run),
        leftovers_location(settings, run.org_id, run.id, attempt),
    )


def leftovers_location(settings: Settings, org_id: str, run_id: str, attempt: int) -> ObjectStore:
    """Where a pod uploads what its attempt leaves (see the module docstring)."""
    return org_store(settings, org_id).scoped(f"runs/{run_id}/leftovers/attempt-{attempt}/")


def _code(session: Session, settings: Settings, run: Run) -> dict[str, tuple[ObjectStore, str]]:
    """The run's own code snapshot: its `workdir`, or what its first launch shipped."""
    digest = run.spec.get("workdir") or shipped_digest(session.get(RunProvenance, run.id))
    row = snapshots.find(session, run.org_id, digest) if digest else None
    if row is None:
        return {}
    return {row.digest: (org_store(settings, run.org_id), row.storage_key)}


def _outside(key: str) -> TrainportError:
    return Forbidden(f"{key!r} is outside this run's storage: {SCOPE_HINT}.").with_code(
        "outside_run_storage"
    )


def _check_key(key: str) -> None:
    """Relative, `/`-separated, no empty, `.` or `..` segment (a trailing `/` names a folder)."""
    body = key[:-1] if key.endswith("/") else key
    segments = body.split("/")
    if (
        not body
        or key.startswith("/")
        or "\\" in key
        or any(s in {"", ".", ".."} for s in segments)
        or any(ord(c) < 32 or ord(c) == 127 for c in key)
    ):
        raise _outside(key)


def resolve(storage: RunStorage, key: str, method: StorageMethod) -> Target:
    """Where `key` lives, if the run may use `method` on it; 403 otherwise."""
    _check_key(key)
    if key.startswith(CHECKPOINTS):
        return Target(storage.checkpoints, key[len(CHECKPOINTS) :], None)
    if key.startswith(CODE):
        return _code_target(storage, key, method)
    if key.startswith(LEFTOVERS) and storage.leftovers is not None:
        if method is not StorageMethod.PUT:
            raise Forbidden("An attempt's leftovers are written once, by its pod.").with_code(
                "write_only"
            )
        return Target(storage.leftovers, key[len(LEFTOVERS) :], None)
    if not key.startswith(DATASETS):
        raise _outside(key)
    name, separator, path = key[len(DATASETS) :].partition("/")
    dataset = storage.datasets.get(name)
    if dataset is None or not separator:
        raise _outside(key)
    if method is not StorageMethod.GET:
        raise Forbidden(
            f"Dataset {name!r} is a pinned, immutable version: it can be read, not changed."
        ).with_code("read_only")
    return Target(dataset.store, path, dataset)


def _code_target(storage: RunStorage, key: str, method: StorageMethod) -> Target:
    found = storage.code.get(key[len(CODE) :])
    if found is None:
        raise _outside(key)
    if method is not StorageMethod.GET:
        raise Forbidden("A code snapshot is immutable: it can be read, not changed.").with_code(
            "read_only"
        )
    return Target(found[0], found[1], None)


def url_seconds(settings: Settings) -> int:
    """How long a URL presigned for a run's own storage stays valid."""
    return min(settings.run_presigned_url_seconds, settings.presigned_url_seconds)


def presign(
    storage: RunStorage, settings: Settings, body: PresignRequest, now: datetime
) -> PresignOut:
    """One URL per operation, in order; the whole request is refused if any key is."""
    seconds = url_seconds(settings)
    signed = [
        PresignedOperation(method=op.method, key=op.key, url=_presign_one(storage, op, seconds))
        for op in body.operations
    ]
    return PresignOut(expires_at=now + timedelta(seconds=seconds), operations=signed)


def _object(storage: RunStorage, key: str, method: StorageMethod) -> Target:
    """A single object's target (not a folder), for `method`."""
    target = resolve(storage, key, method)  # first: a key outside is a 403, folder or not
    if key.endswith("/"):
        raise InvalidInput(
            f"{key!r} names a folder: presign objects one by one, and list a folder with "
            "GET /v1/runs/{run_id}/storage/objects."
        )
    if target.dataset is not None and target.key not in target.dataset.sizes:
        raise NotFound(f"{key!r} is not a file of the dataset version pinned for this run.")
    return target


def _local_storage() -> TrainportError:
    return Conflict(
        "This platform keeps objects on local disk, where nothing is presigned: use the "
        "file:// paths of TRAINPORT_CHECKPOINT_URI and TRAINPORT_DATASETS directly.",
        code="local_storage",
    )


def _presign_one(storage: RunStorage, op: PresignOperation, seconds: int) -> str:
    method = StorageMethod.PUT if op.method is StorageMethod.PUT_PART else op.method
    target = _object(storage, op.key, method)
    if op.method is StorageMethod.PUT_PART and op.upload_id and op.part_number:  # both: schema
        store = _multipart_store(target)
        return store.presigned_part_url(target.key, op.upload_id, op.part_number, seconds)
    signers: dict[StorageMethod, Callable[[str, int], str | None]] = {
        StorageMethod.GET: target.store.presigned_url,
        StorageMethod.PUT: target.store.presigned_put_url,
        StorageMethod.DELETE: target.store.presigned_delete_url,
    }
    url = signers[op.method](target.key, seconds)
    if url is None:
        raise _local_storage()
    return url


def _multipart_store(target: Target) -> S3ObjectStore:
    if not isinstance(target.store, S3ObjectStore):
        raise _local_storage()
    return target.store


def start_multipart(storage: RunStorage, key: str) -> MultipartOut:
    """Open an S3 multipart upload of one object (storage I/O: no transaction open)."""
    target = _object(storage, key, StorageMethod.PUT)
    upload_id = _multipart_store(target).start_multipart(target.key)
    return MultipartOut(key=key, upload_id=upload_id)


def complete_multipart(storage: RunStorage, key: str, upload_id: str) -> None:
    """Join the parts that arrived, 1..n with none missing (the API lists them itself, so the
    run need not report ETags)."""
    target = _object(storage, key, StorageMethod.PUT)
    store = _multipart_store(target)
    parts = store.uploaded_parts(target.key, upload_id)
    if parts is None:
        raise NotFound(f"No open multipart upload {upload_id} of {key!r} (completed or aborted).")
    missing = sorted(set(range(1, max(parts, default=0) + 1)) - set(parts))
    if not parts or missing:
        raise InvalidInput(
            f"Multipart upload of {key!r} is missing parts {missing or [1]}: PUT them, then "
            "complete again."
        )
    store.complete_multipart(target.key, upload_id, [parts[n][1] for n in sorted(parts)])


def listing(storage: RunStorage, prefix: str, delimiter: str | None) -> StorageListing:
    """The objects under a folder of the run's storage (storage I/O: no transaction open)."""
    if not prefix.endswith("/"):
        raise InvalidInput(f"List a folder: {prefix!r} must end in '/'.")
    target = resolve(storage, prefix, StorageMethod.GET)
    if target.dataset is not None:  # the manifest, not whatever else sits at the source
        sizes = target.dataset.sizes.items()
        found = sorted((p[len(target.key) :], s) for p, s in sizes if p.startswith(target.key))
    else:
        found = [(o.key, o.size) for o in target.store.list(target.key)]
    return _grouped(prefix, found, delimiter)


def _grouped(prefix: str, found: list[tuple[str, int]], delimiter: str | None) -> StorageListing:
    objects, folders = [], set()
    for relative, size in found:
        head, separator, _ = relative.partition("/")
        if delimiter and separator:
            folders.add(f"{prefix}{head}/")
        else:
            objects.append(StoredObjectOut(key=prefix + relative, size=size))
    return StorageListing(prefix=prefix, objects=objects, prefixes=sorted(folders))

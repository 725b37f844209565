"""Dataset rules: create and read datasets, add immutable versions, serve manifests and files.

A version is named by its content digest (core/datasets/schemas.content_digest); adding content
a dataset already holds answers the existing version. A run token reads only the datasets, and
versions, its run pinned.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.datasets import repository, sources
from core.datasets.schemas import (
    DIGEST_PREFIX,
    DatasetCreate,
    DatasetList,
    DatasetOut,
    DatasetVersionOut,
    FileEntry,
    Manifest,
    ManifestFile,
    content_digest,
)
from core.datasets.uploads import StagedFiles
from core.errors import Conflict, NotFound
from core.ids import new_id
from core.models import Dataset, DatasetVersion, utcnow
from core.settings import Settings
from core.storage.backends import store_for_uri
from core.storage.base import ObjectStore
from core.tenants.schemas import Principal, Role


@dataclass(frozen=True)
class AddedVersion:
    version: DatasetVersion
    created: bool


def create_dataset(session: Session, caller: Principal, body: DatasetCreate) -> Dataset:
    """Create an empty dataset in the caller's org (members; never a run token)."""
    caller.require(Role.MEMBER)
    _no_run_tokens(caller)
    dataset = Dataset(
        id=new_id("dst"),
        org_id=caller.org_id,
        name=body.name,
        description=body.description,
        created_by=caller.key_id,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(dataset)
            session.flush()
    except IntegrityError:
        raise Conflict(f"Dataset {body.name!r} already exists.", "already_exists") from None
    return dataset


def _no_run_tokens(caller: Principal) -> None:
    if caller.run_id is not None:
        raise NotFound("Datasets are changed with an API key, not a run token.")


def get_dataset(
    session: Session, caller: Principal, name: str, *, for_update: bool = False
) -> Dataset:
    """The named dataset when the caller may see it, else 404; `for_update` locks its row."""
    dataset = repository.get_dataset(session, caller.org_id, name, for_update=for_update)
    if dataset is None or not _visible(session, caller, name):
        raise NotFound(f"Dataset {name} was not found.")
    return dataset


def _visible(session: Session, caller: Principal, name: str) -> bool:
    return caller.run_id is None or bool(
        repository.pinned_version_ids(session, caller.run_id, name)
    )


def describe(session: Session, caller: Principal, name: str) -> DatasetOut:
    """The named dataset as the API shows it, with its versions."""
    dataset = get_dataset(session, caller, name)
    return _dataset_out(dataset, repository.versions_of(session, [dataset.id]))


def list_datasets(session: Session, caller: Principal) -> DatasetList:
    """Every dataset of the caller's org, each with its versions."""
    datasets = repository.list_datasets(session, caller.org_id)
    versions = repository.versions_of(session, [d.id for d in datasets]) if datasets else []
    return DatasetList(
        data=[_dataset_out(d, [v for v in versions if v.dataset_id == d.id]) for d in datasets]
    )


def _dataset_out(dataset: Dataset, versions: list[DatasetVersion]) -> DatasetOut:
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        created_at=dataset.created_at,
        versions=[version_out(dataset.name, v) for v in versions],
    )


def version_out(name: str, version: DatasetVersion) -> DatasetVersionOut:
    """One version of dataset `name` as the API shows it."""
    return DatasetVersionOut(
        dataset=name,
        version=version.version,
        digest=version.digest,
        file_count=version.file_count,
        size_bytes=version.size_bytes,
        uri=version.uri,
        source=version.source,
        created_at=version.created_at,
    )


def add_version(
    session: Session, caller: Principal, name: str, staged: StagedFiles
) -> AddedVersion:
    """Record staged files as the next version, or answer the version with the same digest."""
    caller.require(Role.MEMBER)
    _no_run_tokens(caller)
    dataset = get_dataset(session, caller, name, for_update=True)  # serialises numbering
    digest = content_digest(staged.files)
    existing = repository.version_by_digest(session, dataset.id, digest)
    if existing is not None:
        return AddedVersion(existing, created=False)
    version = DatasetVersion(
        id=new_id("dsv"),
        dataset_id=dataset.id,
        org_id=dataset.org_id,
        version=repository.next_version_number(session, dataset.id),
        digest=digest,
        file_count=len(staged.files),
        size_bytes=sum(f.size for f in staged.files),
        uri=staged.uri,
        storage_key=staged.storage_key,
        source=staged.source,
        files=[f.model_dump() for f in sorted(staged.files, key=lambda f: f.path)],
        created_by=caller.key_id,
        created_at=utcnow(),
    )
    session.add(version)
    session.flush()
    return AddedVersion(version, created=True)


def get_version(session: Session, caller: Principal, name: str, ref: str) -> DatasetVersion:
    """A version by number (`3`) or digest (`sha256:...`); a run token sees only its pins."""
    dataset = get_dataset(session, caller, name)
    version = None
    if ref.startswith(DIGEST_PREFIX):
        version = repository.version_by_digest(session, dataset.id, ref)
    elif ref.isdigit() and len(ref) < 10:
        version = repository.version_by_number(session, dataset.id, int(ref))
    pinned = repository.pinned_version_ids(session, caller.run_id, name) if caller.run_id else []
    if version is None or (caller.run_id is not None and version.id not in pinned):
        raise NotFound(f"Version {ref} of dataset {name} was not found.")
    return version


def manifest(
    session: Session, caller: Principal, settings: Settings, name: str, ref: str
) -> Manifest:
    """A version's files with presigned download URLs (shorter-lived for a run's own token)."""
    version = get_version(session, caller, name, ref)
    store = _store(session, settings, version)
    seconds = settings.presigned_url_seconds
    if caller.run_id is not None:  # a run's URLs are shorter-lived
        seconds = min(seconds, settings.run_presigned_url_seconds)
    files = []
    for entry in version.files:
        url = store.presigned_url(entry["path"], seconds)
        route = f"/v1/datasets/{name}/versions/{version.version}/files/{quote(entry['path'])}"
        files.append(ManifestFile(**entry, url=url or route))
    return Manifest(dataset=name, version=version.version, digest=version.digest, files=files)


def open_file(
    session: Session, caller: Principal, settings: Settings, name: str, ref: str, path: str
) -> tuple[FileEntry, Iterator[bytes]]:
    """A file of a version, for the API to stream; only paths in its manifest."""
    version = get_version(session, caller, name, ref)
    entry = next((FileEntry(**f) for f in version.files if f["path"] == path), None)
    if entry is None:
        raise NotFound(f"File {path} is not part of version {ref} of dataset {name}.")
    return entry, _store(session, settings, version).iter_chunks(path)


def _store(session: Session, settings: Settings, version: DatasetVersion) -> ObjectStore:
    """Where a version's files are; an external source only while it is still allowed."""
    if version.storage_key is None:
        sources.allowed_source(settings, sources.org_keys(session, version.org_id), version.uri)
    return store_for_uri(settings, version.org_id, version.uri, version.storage_key)

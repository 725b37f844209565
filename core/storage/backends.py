"""The object store the settings select (runs never get its credentials).

Runs reach the store only through the API: presigned URLs for their run token
(core/run_storage), which point at the store itself. A local store's files exist only where the
API and the workers run, so with the Kubernetes executor (TRAINPORT_KUBERNETES_CLUSTERS) no pod
could use them: `check_store_reachable_by_runs` refuses that at the start of a worker (and of
an API whose settings name the clusters).
"""

from __future__ import annotations

import threading
from typing import Any

from core.errors import InvalidInput
from core.settings import Settings, StorageBackend
from core.storage.base import ObjectStore
from core.storage.local import LocalObjectStore
from core.storage.s3 import S3Location, S3ObjectStore, make_client

_lock = threading.Lock()


class StoreUnreachableByRuns(Exception):
    """Runs go to Kubernetes, and the object store is local: the process must not start."""


def check_store_reachable_by_runs(settings: Settings) -> None:
    """Raise StoreUnreachableByRuns, saying what to set, when runs cannot reach the store."""
    if not settings.kubernetes_clusters or settings.storage_backend is not StorageBackend.LOCAL:
        return
    clusters = ", ".join(sorted(settings.kubernetes_clusters))
    raise StoreUnreachableByRuns(
        f"runs go to Kubernetes (TRAINPORT_KUBERNETES_CLUSTERS ({clusters})), and the object "
        f"store is local (TRAINPORT_STORAGE_BACKEND=local: files under {settings.storage_root} "
        "that exist only where this process runs): training pods could not read their datasets "
        "or write checkpoints. Configure S3: TRAINPORT_STORAGE_BACKEND=s3 with "
        "TRAINPORT_S3_BUCKET, TRAINPORT_S3_ENDPOINT_URL (empty for AWS; pods reach it through "
        "presigned URLs, so allow it in k8s/network-policy.yaml), TRAINPORT_S3_REGION and the "
        "credentials TRAINPORT_S3_ACCESS_KEY_ID / TRAINPORT_S3_SECRET_ACCESS_KEY (or the "
        "pod's cloud identity)"
    )


_clients: dict[tuple[Any, ...], Any] = {}


def _s3_identity(settings: Settings) -> tuple[Any, ...]:
    secret = settings.s3_secret_access_key
    return (
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.s3_access_key_id,
        secret.get_secret_value() if secret else None,
    )


def s3_client(settings: Settings) -> Any:
    """One boto3 client per S3 configuration and process (clients are thread-safe)."""
    identity = _s3_identity(settings)
    with _lock:
        if identity not in _clients:
            _clients[identity] = make_client(settings)
        return _clients[identity]


def object_store(settings: Settings) -> ObjectStore:
    """The platform's store, at its root (scope it per org with `org_store`)."""
    if settings.storage_backend is StorageBackend.S3:
        if not settings.s3_bucket:
            raise InvalidInput("TRAINPORT_STORAGE_BACKEND=s3 needs TRAINPORT_S3_BUCKET.")
        return S3ObjectStore.from_settings(settings, s3_client(settings))
    return LocalObjectStore(settings.storage_root)


def org_store(settings: Settings, org_id: str) -> ObjectStore:
    """An organization's own part of the store: everything of it lives under `orgs/<id>/`."""
    return object_store(settings).scoped(f"orgs/{org_id}/")


def external_s3(settings: Settings, uri: str) -> S3ObjectStore:
    """An existing `s3://bucket/prefix/` (a dataset source), read with the platform's S3 client."""
    location = S3Location.parse(uri)
    return S3ObjectStore.from_settings(settings, s3_client(settings)).at(location)


def store_for_uri(
    settings: Settings, org_id: str, uri: str, storage_key: str | None
) -> ObjectStore:
    """Where a dataset version's files are: the org's store, or its external S3 source."""
    if storage_key is not None:
        return org_store(settings, org_id).scoped(storage_key)
    return external_s3(settings, uri)

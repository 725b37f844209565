"""Which external `s3://bucket/prefix/` a dataset version may be registered from.

The platform reads a source with its own S3 credentials, which reach far more than any one org
should: its own bucket (every org's objects under `orgs/<id>/`) and whatever else the operator's
account can read. So a source is accepted only when all of these hold:

1. it is in canonical form (lower-case `s3://`, a valid bucket name, no user/port/query, no
   empty, `.` or `..` path segments): the string that is checked is the string that is read;
2. it is not in, and does not contain, the platform's own store (`TRAINPORT_S3_BUCKET` +
   `TRAINPORT_S3_PREFIX`), whatever the allow-list says;
3. it lies under a prefix the operator allowed for the caller's org in
   `TRAINPORT_DATASET_SOURCES` (by org id or name). The default allows nothing.

The same rules are applied again whenever an external version's files are listed or served
(core/datasets/service.py), so a source the operator no longer allows (or one registered before
these rules) stops being served at once.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from core.datasets.schemas import BUCKET_PATTERN
from core.errors import FieldError, InvalidInput, TrainportError
from core.settings import Settings, StorageBackend
from core.storage.s3 import S3Location
from core.tenants import repository as tenants

BUCKET = re.compile(BUCKET_PATTERN)
HOW_TO_ALLOW = (
    "An operator allows external sources per organisation with TRAINPORT_DATASET_SOURCES, "
    'e.g. {"<org id or name>": ["s3://bucket/prefix/"]}.'
)


class SourceNotAllowed(TrainportError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, 403, "source_not_allowed", "Source not allowed")


def canonical(uri: str) -> S3Location:
    """`uri` as a bucket and prefix, refused (422) unless it is already in canonical form."""
    parts = urlsplit(uri)
    segments = parts.path.split("/")[1:]  # the path starts with "/" (or is empty)
    body = segments[:-1] if segments and segments[-1] == "" else segments
    problems = [
        (not uri.startswith("s3://"), "start with lower-case s3://"),
        (not BUCKET.fullmatch(parts.netloc), "name a bucket (lower-case, no user or port)"),
        (bool(parts.query or parts.fragment or "?" in uri or "#" in uri), "have no ? or #"),
        (any(s in {"", ".", ".."} for s in body), "have no empty, '.' or '..' path segments"),
    ]
    failed = [why for bad, why in problems if bad]
    if failed:
        message = f"{uri!r} is not a canonical s3://bucket/prefix/ URI: it must " + "; ".join(
            failed
        )
        raise InvalidInput(message, [FieldError("/source", message)])
    return S3Location.parse(uri)


def allowed_source(settings: Settings, org_keys: tuple[str, ...], uri: str) -> S3Location:
    """The source `uri` names, if an org known by any of `org_keys` may register it."""
    location = canonical(uri)
    if _overlaps_platform_store(settings, location):
        raise SourceNotAllowed(
            f"{uri} is inside the platform's own object store, which is never an external "
            "source: push the files as a new version instead."
        )
    allowed = [canonical(p) for key in org_keys for p in settings.dataset_sources.get(key, [])]
    if not any(_within(location, prefix) for prefix in allowed):
        raise SourceNotAllowed(
            f"{uri} is not an allowed dataset source for this organisation. " + HOW_TO_ALLOW
        )
    return location


def org_keys(session: Session, org_id: str) -> tuple[str, ...]:
    """The names `TRAINPORT_DATASET_SOURCES` may know an org by: its id and its name."""
    org = tenants.get_org(session, org_id)
    return (org_id, org.name) if org is not None else (org_id,)


def _within(location: S3Location, prefix: S3Location) -> bool:
    return location.bucket == prefix.bucket and location.prefix.startswith(prefix.prefix)


def _overlaps_platform_store(settings: Settings, location: S3Location) -> bool:
    """Whether `location` reads any of the platform's objects (or all of them)."""
    if settings.storage_backend is not StorageBackend.S3 or location.bucket != settings.s3_bucket:
        return False
    root = settings.s3_prefix.lstrip("/")
    root = root if not root or root.endswith("/") else root + "/"
    return location.prefix.startswith(root) or root.startswith(location.prefix)

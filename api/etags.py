"""Entity tags for runs and run lists, and the conditional-request checks built on them."""

from __future__ import annotations

import hashlib
import re

from core.errors import FieldError, InvalidInput


def run_etag(resource_version: int) -> str:
    return f'"{resource_version}"'


def list_etag(org_version: int, query_string: str) -> str:
    # The org's newest version changes with any change to any of its runs; the query string
    # tells one list from another. Together they identify a page without reading it.
    query = hashlib.sha256(query_string.encode()).hexdigest()[:16]
    return f'"L{org_version}-{query}"'


def matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


# What `If-Match` may hold (RFC 9110 13.1.1): `*`, or one run ETag; /openapi.json states it.
# (A bare number is taken too, as earlier versions did.)
IF_MATCH = re.compile(r'^(\*|(W/)?("[0-9]{1,19}"|[0-9]{1,19}))$')


def parse_if_match(header: str | None) -> int | None:
    """The resource_version an `If-Match` header names, or None when absent or `*`.

    `*` matches any current representation: the run only has to exist, which every route
    that reads it checks anyway.
    """
    if header is None:
        return None
    tag = header.strip()
    if not IF_MATCH.fullmatch(tag):
        raise InvalidInput(
            'If-Match must be `*` or a run\'s ETag (`"7"`), as GET /v1/runs/{id} returns it.',
            [FieldError.for_parameter("If-Match", "not an ETag issued by this server")],
        )
    return None if tag == "*" else int(tag.removeprefix("W/").strip('"'))

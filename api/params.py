"""Query parameters several routes share, with the rules /openapi.json states for them."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Query
from pydantic import AwareDatetime, BeforeValidator

from core.runs.spec import LABEL_SELECTOR, RESERVED_SELECTOR

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: Any) -> Any:
    """Only the text `format: date-time` describes; pydantic alone would also read `0.5` as a
    Unix time."""
    if not (isinstance(value, str) and RFC3339.fullmatch(value)):
        raise ValueError(
            "must be an RFC 3339 date-time with a time zone, e.g. 2026-01-31T12:00:00Z"
        )
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
LabelSelector = Annotated[
    str | None,
    Query(
        max_length=1024,
        description="`k=v,k2`: every run with label k equal to v and a label k2",
        json_schema_extra={"pattern": LABEL_SELECTOR, "not": {"pattern": RESERVED_SELECTOR}},
    ),
]

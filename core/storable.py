"""What user input must be before it reaches the database: text without NUL, finite numbers,
integers that are integers.

PostgreSQL refuses NUL (U+0000) in text and JSONB, and half a surrogate pair (JSON's
`"\ud83d"` alone, which pydantic keeps in free-form values); JSON has no NaN or Infinity
(pydantic would silently store them as null). Models run this over their fields so that such
input is a 422 pointing at the field, never a 500 from the driver or a silently changed value.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator, Strict


def check_storable(value: Any) -> Any:
    """`value` unchanged, or ValueError when it (or anything nested in it) cannot be stored."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL (\\u0000) characters")
        if not value.isascii() and not _encodable(value):
            raise ValueError("text must be valid Unicode: a \\ud800-\\udfff escape needs its pair")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key)
            check_storable(item)
    elif isinstance(value, list | tuple):
        for item in value:
            check_storable(item)
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _integral(value: Any) -> Any:
    """A float with no fraction (`1.0`, an integer to JSON Schema) as the int; else unchanged,
    for the strict check that follows to refuse (a boolean, a string, `1.5`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The integer of every request body: what JSON Schema calls an integer and nothing
# else. Pydantic's lax int would take `false` as 0 and `"5"` as 5; its StrictInt refuses `1.0`.
# Bounds go before it, `Annotated[int, Field(ge=0), *INTEGER]`: after the validator pydantic
# would still check them but describe them to /openapi.json as `ge`/`le`, which no client reads.
INTEGER = (Strict(), BeforeValidator(_integral))
StrictInteger = Annotated[int, *INTEGER]


# check_storable over free-form JSON, for /openapi.json: a component of that name, recursive.
STORABLE_JSON = "StorableJson"
_STORABLE_REF = {"$ref": f"#/components/schemas/{STORABLE_JSON}"}
NO_NUL_PATTERN = r"^[^\x00]*$"
STORABLE_JSON_SCHEMA: dict[str, Any] = {
    "description": "any JSON value whose text (keys included) holds no NUL",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL_PATTERN},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": _STORABLE_REF},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL_PATTERN},
            "additionalProperties": _STORABLE_REF,
        },
    ],
}
# A free-form mapping of storable values (a recipe's `parameters`).
STORABLE_MAPPING: dict[str, Any] = {
    "propertyNames": {"pattern": NO_NUL_PATTERN},
    "additionalProperties": _STORABLE_REF,
}

"""What user input must be before it reaches the database: text without NUL, finite numbers.

PostgreSQL refuses NUL (U+0000) in text and JSONB, and half a surrogate pair (JSON's
`"\ud83d"` alone, which pydantic keeps in free-form values); JSON has no NaN or Infinity
(pydantic would silently store them as null). Models run this over their fields so that such
input is a 422 pointing at the field, never a 500 from the driver or a silently changed value.
"""

from __future__ import annotations

import math
from typing import Any


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

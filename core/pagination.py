"""Opaque keyset cursors: base64url JSON that only this server reads back."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from core.errors import FieldError, InvalidInput

MAX_PAGE_SIZE = 200


def encode_cursor(**position: Any) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, **fields: type) -> dict[str, Any]:
    """The position a cursor holds, or a 422 when it was not made by `encode_cursor`.

    `fields` names each key the cursor must hold and its type, e.g. `decode_cursor(c, id=str)`.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        position = None
    well_formed = isinstance(position, dict) and set(position) == set(fields)
    if not well_formed or not all(
        type(position[name]) is kind and "\x00" not in str(position[name])
        for name, kind in fields.items()  # bool is not an int here
    ):
        raise InvalidInput(
            "The cursor is not valid; pass back `next_cursor` from a previous page unchanged.",
            [FieldError.for_parameter("after", "not a cursor issued by this server")],
        )
    return dict(position)

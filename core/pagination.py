"""Keyset cursors: `<kind>.<position>`, a grammar `/openapi.json` states as a pattern.

A cursor names the last row of a page (a run id, an event id) behind a one-letter kind, so a
cursor of one list is refused by another. Clients pass back `next_cursor` unchanged; a cursor
that matches the pattern is a valid position (a page after it, perhaps empty), and one that does
not is a 422 naming `after`, from the parameter's own pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import FieldError, InvalidInput

MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class CursorKind:
    tag: str
    position: str  # regex of the positions this kind holds

    @property
    def pattern(self) -> str:
        return rf"^{self.tag}\.{self.position}$"

    def encode(self, position: str | int) -> str:
        return f"{self.tag}.{position}"

    def decode(self, cursor: str) -> str:
        """The position a cursor holds, or a 422 when it is not one of this kind."""
        if not re.fullmatch(self.pattern, cursor):
            raise InvalidInput(
                "The cursor is not valid; pass back `next_cursor` from a previous page unchanged.",
                [FieldError.for_parameter("after", "not a cursor of this list")],
            )
        return cursor[len(self.tag) + 1 :]


RUN_CURSOR = CursorKind("r", "run_[0-9a-z]{1,60}")  # below this run id, newest first
EVENT_CURSOR = CursorKind("e", "[0-9]{1,18}")  # after this event id, oldest first
DELIVERY_CURSOR = CursorKind("d", "msg_[0-9a-f]{32}")  # below this webhook delivery, newest first

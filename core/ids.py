"""Public ids: a type prefix plus a ULID, so ids sort by creation time and say what they name."""

from __future__ import annotations

from datetime import datetime

from ulid import ULID

PREFIXES = ("org", "prj", "key", "run")


def new_id(prefix: str) -> str:
    """A fresh id such as `run_01jd5x...`; lower case keeps ULID order (digits before letters)."""
    return f"{prefix}_{str(ULID()).lower()}"


def lowest_id_at(prefix: str, moment: datetime) -> str:
    """The smallest id that could have been minted at `moment`: a keyset bound for time filters."""
    # ULIDs cover 1970 to 10889: clamp, since any id is above the bound of an earlier moment.
    ulid = ULID.from_timestamp(min(max(moment.timestamp(), 0.0), 2.0**48 / 1000 - 1))
    timestamp_part = str(ulid)[:10]
    return f"{prefix}_{timestamp_part.lower()}{'0' * 16}"

"""Runs `metrics.from_logs` over the logs of the attempts this worker observes.

Each reconcile pass, before any attempt is settled, parses what rank 0's log gained since the
last pass (core/metrics/observed.py), so a chart follows the run live, and an ended attempt's
last lines are in its series before the run is seen finished. Rank 0 only: research scripts
print their loss from the main process, and every rank of a `torchrun` node shares one log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from core.log_archive import LogArchive
from core.logs import LogKey
from core.metrics.from_logs import patterns_of
from core.metrics.observed import LogBytes, tail_log

METRICS_RANK = 0
log = logging.getLogger("trainport.log_metrics")


def archive_reader(archive: LogArchive, key: LogKey) -> LogBytes:
    """The rank's log as the database stores it (core/log_archive.py), as `LogBytes`: every
    replica's worker reads the same bytes, whichever process shipped them."""

    def read(offset: int, limit: int) -> bytes:
        parts, position, size = [], offset, 0
        while size < limit:
            data, position = archive.page(key, position)
            if not data:
                break
            parts.append(data)
            size += len(data)
        return b"".join(parts)[:limit]  # parse_stored consumes whole lines only

    return read


def tail_attempts(
    factory: sessionmaker[Session],
    attempts: Iterable[tuple[str, int, bool]],
    metrics: Mapping[str, dict[str, Any] | None],
) -> None:
    """Parse the logs of `(run id, attempt, ended)`; an ended attempt's to its end.

    `metrics`: each run's spec `metrics` part (`repository.metrics_parts`), all that
    `patterns_of` reads."""
    for run_id, attempt, ended in attempts:
        part = metrics.get(run_id) or {}
        if not part.get("from_logs"):
            continue
        try:
            _tail(factory, run_id, attempt, {"metrics": part}, ended)
        except Exception:  # one run's log never holds up the pass for the others
            log.exception("parsing metrics from the log of %s/%d failed", run_id, attempt)


def _tail(
    factory: sessionmaker[Session],
    run_id: str,
    attempt: int,
    spec: dict[str, Any],
    ended: bool,
) -> None:
    patterns = patterns_of(spec)
    read = archive_reader(LogArchive(factory), LogKey(run_id, attempt, METRICS_RANK))
    more = True
    while more:
        with session_scope(factory) as session:
            _, more = tail_log(session, run_id, attempt, METRICS_RANK, patterns, read, time.time())
        more = more and ended  # a live log is read on at the next pass

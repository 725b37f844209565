"""Imports `metrics.tensorboard_dir` event files of the attempts this worker can see.

Where the attempt's folder is on this machine (the local executor: `Executor.leftovers`), each
reconcile pass, before any attempt is settled, imports what the event files gained since the
last pass (core/metrics/observed.py `tail_event_file`), so the charts follow the run live; an
ended attempt's files are read to their end before it is settled. On Kubernetes the pod uploads
its event files when the trainer exits, and the worker imports them from a downloaded copy when
it settles the attempt (workers/harvest.py), through this same module.

Files are found as the outputs are (workers/harvest.py `matches`): regular files inside the
working directory, reached through no link — a run cannot make the worker read files of others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from core.metrics.observed import LogBytes, tail_event_file
from core.metrics.tensorboard import EVENT_FILE_GLOB, CorruptEventFile
from workers.executors.base import Executor
from workers.harvest import matches, open_regular

log = logging.getLogger("trainport.tensorboard_metrics")


def tensorboard_dir(spec: dict[str, Any]) -> str | None:
    folder: str | None = (spec.get("metrics") or {}).get("tensorboard_dir")
    return folder


def import_live(
    factory: sessionmaker[Session],
    attempts: Iterable[tuple[Executor, str, int, bool]],
    metrics: Mapping[str, dict[str, Any] | None],
) -> None:
    """Import the event files of `(executor, run id, attempt, ended)` whose folder is here.

    `metrics`: each run's spec `metrics` part (`repository.metrics_parts`)."""
    for executor, run_id, attempt, ended in attempts:
        folder = tensorboard_dir({"metrics": metrics.get(run_id)})
        if not folder:
            continue
        found = executor.leftovers(run_id, attempt)
        if found is None:
            continue  # a pod's files: imported from what it uploads (workers/harvest.py)
        try:
            import_folder(factory, run_id, attempt, found.workdir, folder, ended)
        except Exception:  # one run's files never hold up the pass for the others
            log.exception("importing the TensorBoard files of %s/%d failed", run_id, attempt)


def import_folder(
    factory: sessionmaker[Session],
    run_id: str,
    attempt: int,
    workdir: Path,
    folder: str,
    ended: bool,
) -> int:
    """Import the event files under `workdir/folder`; an ended attempt's to their ends.
    Answers the points recorded."""
    total = 0
    if not workdir.is_dir():
        return 0
    for path, relative in matches(workdir, [f"{folder}/**/{EVENT_FILE_GLOB}"]):
        try:
            total += _tail_file(factory, run_id, attempt, path, relative, ended)
        except CorruptEventFile as corrupt:
            log.warning("%s of %s/%d: %s; the rest is skipped", relative, run_id, attempt, corrupt)
    return total


def _tail_file(
    factory: sessionmaker[Session],
    run_id: str,
    attempt: int,
    path: Path,
    relative: str,
    ended: bool,
) -> int:
    read = _file_reader(path)
    total, more = 0, True
    while more:
        with session_scope(factory) as session:
            count, more = tail_event_file(session, run_id, attempt, relative, read)
        total += count
        more = more and ended  # a live file is read on at the next pass
    return total


def _file_reader(path: Path) -> LogBytes:
    def read(offset: int, limit: int) -> bytes:
        with open_regular(path) as source:
            source.seek(offset)
            return source.read(limit)

    return read

"""What an ended attempt leaves behind, kept before the executor forgets it.

Called by the reconciler when an attempt has ended (succeeded, failed or stopped) and before it
is settled and cleaned up, for executors that leave files on this machine (`Executor.leftovers`:
the local executor; a pod uploads its own):

- **Outputs.** Files under the attempt's working directory matching the spec's `outputs` globs
  are uploaded to `runs/<run>/outputs/attempt-<n>/` (core/outputs/service.py), hashed on the way,
  and recorded. Links are never followed, nor is anything outside the working directory read: a
  run could plant a link to files that are not its own. Everything else in the working
  directory is deleted with it.
- **Checkpoints without the runtime.** Files a script wrote directly in TRAINPORT_CHECKPOINT_DIR
  (a `ckpt.pt` it overwrites as it goes) are copied into a checkpoint folder `step-<step>/` with
  a `COMMIT` marker the platform writes, and registered as `observed`: every digest is the
  platform's. The step is the highest step the run's metrics had reached when the newest of
  those files was written (0 when it reported none). Nothing is made when the files equal the
  newest checkpoint's, or when the folder holds the runtime's own `step-*/COMMIT` checkpoints
  (the runtime's markers win: it registers them itself).

Harvesting twice (two reconcilers, a retried pass) records the same rows and objects again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.orm import Session, sessionmaker

from core.checkpoints import repository as checkpoint_rows
from core.checkpoints.schemas import COMMIT_MARKER, step_folder
from core.checkpoints.service import location as checkpoint_location
from core.checkpoints.service import record_observed
from core.datasets.schemas import FileEntry
from core.db import read_sessions, session_scope
from core.metrics.repository import step_at
from core.models import Run
from core.outputs import service as outputs
from core.runs.repository import BARE
from core.settings import Settings
from core.storage.base import HashingReader, ObjectStore
from workers.executors.base import Leftovers

RUNTIME_STEP = "step-"  # the runtime's (and our) checkpoint folders: never loose files
MADE_BY = "trainport-harvest"  # in the COMMIT markers this module writes
log = logging.getLogger("trainport.harvest")


@dataclass(frozen=True)
class RunFacts:
    org_id: str
    spec: dict[str, Any]
    harvested: bool  # outputs of this attempt are recorded already


def harvest(
    factory: sessionmaker[Session], settings: Settings, run_id: str, attempt: int, found: Leftovers
) -> None:
    """Keep the attempt's outputs and loose checkpoint files (see the module docstring)."""
    with session_scope(read_sessions(factory)) as session:  # reads: no write lock on SQLite
        run = session.get(Run, run_id, options=BARE)
        if run is None:
            return
        harvested = bool(run.spec.get("outputs")) and bool(outputs.of_run(session, run_id, attempt))
        facts = RunFacts(run.org_id, dict(run.spec), harvested)
    globs = facts.spec.get("outputs") or []
    if globs and not facts.harvested:
        store = outputs.location(settings, facts.org_id, run_id, attempt)
        kept = [_upload(store, path, relative) for path, relative in matches(found.workdir, globs)]
        with session_scope(factory) as session:
            outputs.record(session, facts.org_id, run_id, attempt, kept)
    _snapshot_checkpoint(factory, settings, run_id, attempt, facts, found.checkpoint_dir)


def matches(root: Path, globs: list[str]) -> Iterator[tuple[Path, str]]:
    """Regular files under `root` matching any glob (a matched folder: every file in it), each
    once, in path order, at most `MAX_OUTPUT_FILES`; never through a link, never outside
    `root`."""
    root = root.resolve()
    seen: set[str] = set()
    for pattern in globs:
        for path in _expanded(root, pattern):
            relative = _inside(root, path)
            if relative is None or relative in seen:
                continue
            if len(seen) >= outputs.MAX_OUTPUT_FILES:
                log.warning("outputs of %s: more than %d files", root, outputs.MAX_OUTPUT_FILES)
                return
            seen.add(relative)
            yield path, relative


def _expanded(root: Path, pattern: str) -> list[Path]:
    found: list[Path] = []
    for path in root.glob(pattern):
        if path.is_dir() and not path.is_symlink():
            found.extend(path.rglob("*"))  # 3.11 does not descend into linked folders
        else:
            found.append(path)
    return sorted(set(found))


def _inside(root: Path, path: Path) -> str | None:
    """`path` relative to `root` if it is a regular file there reached through no link."""
    try:
        mode = path.lstat().st_mode
        relative = path.relative_to(root)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(mode) or path.resolve() != root / relative:
        return None  # a link, or inside a linked folder
    return relative.as_posix()


def open_regular(path: Path) -> BinaryIO:
    """Open without following a link that appeared since the check."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    return os.fdopen(descriptor, "rb")


def _upload(store: ObjectStore, path: Path, key: str) -> FileEntry:
    with open_regular(path) as source:
        reader = HashingReader(source)
        store.put_stream(key, reader)  # type: ignore[arg-type]  # read-once, like a request
    return FileEntry(path=key, size=reader.size, sha256=reader.sha256)


# -- checkpoints written without the runtime ---------------------------------------------------


def loose_files(folder: Path) -> list[tuple[Path, str]]:
    """Files a script wrote in its checkpoint folder itself: not in a `step-*` folder, not
    hidden (a half-written temporary file), reached through no link."""
    if not folder.is_dir():
        return []
    root = folder.resolve()
    found: list[tuple[Path, str]] = []
    for path in sorted(root.rglob("*")):
        relative = _inside(root, path)
        if relative is None:
            continue
        head = relative.split("/", 1)[0]
        if head.startswith(RUNTIME_STEP) or any(p.startswith(".") for p in relative.split("/")):
            continue
        found.append((path, relative))
    return found


def _runtime_checkpoints(folder: Path) -> bool:
    """Whether the runtime wrote checkpoints here (markers this module wrote do not count)."""
    for marker in folder.glob(f"{RUNTIME_STEP}*/{COMMIT_MARKER}"):
        try:
            document = json.loads(marker.read_bytes()[: 1 << 20])
        except (OSError, ValueError):
            continue
        if isinstance(document, dict) and document.get("made_by") != MADE_BY:
            return True
    return False


def _snapshot_checkpoint(
    factory: sessionmaker[Session],
    settings: Settings,
    run_id: str,
    attempt: int,
    facts: RunFacts,
    folder: Path,
) -> None:
    files = loose_files(folder)
    if not files or _runtime_checkpoints(folder):
        return
    digests = [(relative, *_digest(path)) for path, relative in files]
    written = max(path.lstat().st_mtime for path, _ in files)
    with session_scope(factory) as session:
        newest = checkpoint_rows.of_run(session, run_id)
        if newest and {(f["path"], f["sha256"]) for f in newest[0].files} == {
            (relative, digest) for relative, digest, _ in digests
        }:
            return  # unchanged since the last checkpoint
        step = step_at(session, run_id, written) or 0
    store = checkpoint_location(settings, facts.org_id, run_id).scoped(step_folder(step))
    entries = [_upload(store, path, relative) for path, relative in files]
    marker = json.dumps(
        {
            "step": step,
            "files": [e.model_dump() for e in entries],
            "time": written,
            "made_by": MADE_BY,
        },
        indent=1,
    ).encode()
    store.put_bytes(COMMIT_MARKER, marker)
    with session_scope(factory) as session:
        run = session.get(Run, run_id)
        if run is not None:
            record_observed(session, run, attempt, step, entries, marker)
    log.info("registered %d loose checkpoint file(s) of %s as step %d", len(entries), run_id, step)


def _digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open_regular(path) as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size

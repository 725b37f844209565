"""What a pod left, kept when its attempt is settled: the Kubernetes side of workers/harvest.py.

A pod's wrapper (core/outputs/pod_upload.py) uploads, when its trainer exits, the files the
attempt leaves to `runs/<run>/leftovers/attempt-<n>/` (outputs/, tensorboard/, checkpoints/,
and mtimes.json last). When the worker settles that attempt it copies them into a temporary
folder laid out as the pod's were — the working directory and the checkpoint folder — and
keeps them exactly as the local executor's: `harvest` (outputs hashed on the way, loose
checkpoints registered as `observed`, dated by the pod's modification times) and the
TensorBoard import to the end of each file. The uploaded copies are then deleted. Nothing
uploaded (an OOM-killed container, an image without Python) means nothing kept, as for a
local attempt whose folder is gone.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from core.models import Run
from core.run_storage.service import leftovers_location
from core.settings import Settings
from core.storage.base import ObjectStore
from workers.executors.base import Leftovers
from workers.harvest import harvest
from workers.tensorboard_metrics import import_folder, tensorboard_dir

MTIMES = "mtimes.json"
KINDS = ("outputs", "tensorboard", "checkpoints")
log = logging.getLogger("trainport.pod_leftovers")


def keep_uploaded(
    factory: sessionmaker[Session], settings: Settings, run_id: str, attempt: int
) -> None:
    """Keep what the attempt's pod uploaded (see the module docstring)."""
    with session_scope(factory) as session:
        run = session.get(Run, run_id)
        if run is None:
            return
        org_id, spec = run.org_id, dict(run.spec)
    store = leftovers_location(settings, org_id, run_id, attempt)
    keys = [stored.key for stored in store.list()]
    if not keys:
        return
    with tempfile.TemporaryDirectory(prefix="trainport-leftovers-") as scratch:
        root = Path(scratch)
        found = Leftovers(root / "workdir", root / "checkpoints")
        _download(store, keys, found)
        harvest(factory, settings, run_id, attempt, found)
        if folder := tensorboard_dir(spec):
            import_folder(factory, run_id, attempt, found.workdir, folder, ended=True)
    store.delete_prefix("")
    log.info("kept %d file(s) the pod of %s attempt %d uploaded", len(keys) - 1, run_id, attempt)


def _download(store: ObjectStore, keys: list[str], found: Leftovers) -> None:
    mtimes = _mtimes(store) if MTIMES in keys else {}
    found.workdir.mkdir()
    found.checkpoint_dir.mkdir()
    for key in keys:
        kind, _, relative = key.partition("/")
        path = PurePosixPath(relative)
        if kind not in KINDS or not relative or path.is_absolute() or ".." in path.parts:
            continue
        target = (found.checkpoint_dir if kind == "checkpoints" else found.workdir) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as sink:
            for chunk in store.iter_chunks(key):
                sink.write(chunk)
        stamp = mtimes.get(f"leftovers/{key}")
        if isinstance(stamp, int | float):
            os.utime(target, (stamp, stamp))


def _mtimes(store: ObjectStore) -> dict[str, object]:
    try:
        document = json.loads(store.read_bytes(MTIMES, limit=16 << 20))
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}

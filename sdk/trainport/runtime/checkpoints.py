"""`run.checkpoints`: save, list, find the latest complete one, load it back safely.

    state = run.checkpoints.load()            # None on a fresh start
    ...
    run.checkpoints.save({"model": model.state_dict(), "step": step}, step=step)

Saving writes the state (and any extra files) into a staging folder, records each file's size
and sha256 in a `COMMIT` marker written last (see `stores`), registers the checkpoint with the
platform from the background reporter, and keeps only the newest `keep_last`. `latest()` only
ever returns checkpoints whose marker exists, parses, names its step and whose files are all
there, so a cut upload or a crash mid-save falls back to the previous one. Loading checks every
file's sha256 against the marker and unpickles nothing but tensors and plain containers.
"""

from __future__ import annotations

import builtins
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainport.runtime import serialization
from trainport.runtime.digests import FileEntry, describe_files, file_sha256
from trainport.runtime.stores import COMMIT, CheckpointStore, folder_name, folder_step

log = logging.getLogger("trainport.runtime")
DEFAULT_KEEP_LAST = 3


class CheckpointCorruptError(Exception):
    """A checkpoint file does not match the sha256 its COMMIT marker recorded."""


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint: its step, folder, files and the metrics saved with it."""

    step: int
    name: str
    files: tuple[FileEntry, ...]
    time: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    store: CheckpointStore | None = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> str:
        """The folder relative to the checkpoint URI, as the API records it: `step-.../`."""
        return f"{self.name}/"

    @property
    def uri(self) -> str:
        return f"{self.store.uri if self.store else ''}{self.name}/"

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.files)

    def local_dir(self) -> Path:
        """A local folder with the checkpoint's files (downloaded from S3 first if need be)."""
        if self.store is None:
            raise RuntimeError("this checkpoint has no store to read from")
        return self.store.local_dir(self.name, list(self.files))

    def verify(self) -> Path:
        """The local folder, after checking every file against its recorded sha256."""
        folder = self.local_dir()
        for entry in self.files:
            if file_sha256(folder / entry.path) != entry.sha256:
                raise CheckpointCorruptError(f"{self.uri}{entry.path} does not match its COMMIT")
        return folder

    def load(self, *, map_location: Any = "cpu", verify: bool = True) -> Any:
        """The saved state; only tensors, numbers, strings and containers are unpickled."""
        folder = self.verify() if verify else self.local_dir()
        return serialization.read_state(folder, map_location)


def parse_marker(raw: bytes, name: str, store: CheckpointStore | None) -> Checkpoint | None:
    """The checkpoint a COMMIT marker describes, or None when it is not a valid marker."""
    try:
        document = json.loads(raw)
        files = tuple(FileEntry.from_json(f) for f in document["files"])
        step = int(document["step"])
        when = float(document.get("time", 0.0))
        metrics = dict(document.get("metrics") or {})
    except (ValueError, KeyError, TypeError):
        return None
    if step != folder_step(name):
        return None
    return Checkpoint(step, name, files, when, metrics, store)


class Checkpoints:
    """The checkpoints of one run, in its checkpoint store (shared by every attempt)."""

    def __init__(
        self,
        store: CheckpointStore,
        *,
        keep_last: int = DEFAULT_KEEP_LAST,
        writer: bool = True,
        on_saved: Callable[[Checkpoint], None] | None = None,
        on_loaded: Callable[[Checkpoint], None] | None = None,
    ) -> None:
        if keep_last < 1:
            raise ValueError("keep_last must be at least 1")
        self.store, self.keep_last, self.writer = store, keep_last, writer
        self._on_saved, self._on_loaded = on_saved, on_loaded

    @property
    def uri(self) -> str:
        return self.store.uri

    def save(
        self, obj: Any, step: int, *, metrics: Mapping[str, float] | None = None
    ) -> Checkpoint | None:
        """Save `obj` (a state dict: tensors, numbers, containers) as the checkpoint of `step`.

        Only the writer (rank 0) saves; other ranks get None, so every rank may call it.
        """
        return self._save(step, metrics, lambda folder: serialization.write_state(obj, folder))

    def save_files(
        self,
        files: Mapping[str, str | Path] | str | Path,
        step: int,
        *,
        metrics: Mapping[str, float] | None = None,
    ) -> Checkpoint | None:
        """Save files as they are: a folder's contents, or `{"relative/path": source}`."""
        sources = files if isinstance(files, Mapping) else {"": files}

        def copy(folder: Path) -> None:
            for relative, source in sources.items():
                source = Path(source)
                if source.is_dir():
                    shutil.copytree(source, folder / relative, dirs_exist_ok=True)
                else:
                    (folder / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, folder / (relative or source.name))

        return self._save(step, metrics, copy)

    def _save(
        self, step: int, metrics: Mapping[str, float] | None, write: Callable[[Path], None]
    ) -> Checkpoint | None:
        if not self.writer:
            return None
        if step < 0:
            raise ValueError(f"step must be >= 0, not {step}")
        staging = self.store.staging_dir()
        try:
            write(staging)
            files = tuple(describe_files(staging, skip=[COMMIT]))
            checkpoint = Checkpoint(
                step, folder_name(step), files, time.time(), dict(metrics or {}), self.store
            )
            self.store.publish(staging, checkpoint.name, _marker(checkpoint))
        except BaseException:
            self.store.discard(staging)
            raise
        self._prune(step)
        if self._on_saved is not None:
            self._on_saved(checkpoint)
        return checkpoint

    def list(self) -> builtins.list[Checkpoint]:
        """Every complete checkpoint, oldest step first."""
        found = [self._read(name) for name in self._names_newest_first()]
        return sorted((c for c in found if c is not None), key=lambda c: c.step)

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint; never a partial one."""
        for name in self._names_newest_first():
            checkpoint = self._read(name)
            if checkpoint is not None:
                return checkpoint
        return None

    def load(self, checkpoint: Checkpoint | int | None = None, *, map_location: Any = "cpu") -> Any:
        """The state saved in `checkpoint` (a Checkpoint or a step; the latest by default),
        verified against its marker; None when there is no checkpoint yet."""
        if isinstance(checkpoint, int):
            checkpoint = self._read(folder_name(checkpoint))
            if checkpoint is None:
                raise FileNotFoundError(f"no complete checkpoint for that step in {self.uri}")
        else:
            checkpoint = checkpoint or self.latest()
        if checkpoint is None:
            return None
        state = checkpoint.load(map_location=map_location)
        if self._on_loaded is not None:
            self._on_loaded(checkpoint)
        return state

    def _names_newest_first(self) -> builtins.list[str]:
        return sorted(self.store.names(), key=lambda n: folder_step(n) or 0, reverse=True)

    def _read(self, name: str) -> Checkpoint | None:
        raw = self.store.read_marker(name)
        if raw is None:
            return None
        checkpoint = parse_marker(raw, name, self.store)
        if checkpoint is None or not self.store.files_present(name, [*checkpoint.files]):
            log.warning("trainport: ignoring the incomplete checkpoint %s%s", self.uri, name)
            return None
        return checkpoint

    def _prune(self, saved_step: int) -> None:
        """Keep the newest `keep_last` complete checkpoints; drop older incomplete folders."""
        kept = 0
        for name in self._names_newest_first():
            step = folder_step(name) or 0
            complete = self.store.read_marker(name) is not None
            if complete and kept < self.keep_last:
                kept += 1
            elif complete or step < saved_step:
                self.store.delete(name)


def _marker(checkpoint: Checkpoint) -> bytes:
    document = {
        "step": checkpoint.step,
        "files": [entry.to_json() for entry in checkpoint.files],
        "time": checkpoint.time,
        "metrics": dict(checkpoint.metrics),
    }
    return json.dumps(document, indent=1).encode()

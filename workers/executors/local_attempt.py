"""The local executor's on-disk bookkeeping for one attempt, and the process checks it needs.

Everything is named from (run id, attempt) under `<state_dir>/runs/<run_id>/`:

    attempt-<n>.lock        flock taken by launch, cancel and cleanup (outlives the folder)
    attempt-<n>.cleaned     tombstone: the attempt was cleaned up; it is never launched again
    attempt-<n>/launch.json world size, master port, launch time — written before any rank starts
    attempt-<n>/cancel.json the SIGKILL deadline, once a cancel was asked for
    attempt-<n>/work/       the ranks' working directory
    attempt-<n>/ranks/rank-<r>.json|.pid|.exit|.shim.log   per-rank config, claim, result
    checkpoints/            TRAINPORT_CHECKPOINT_DIR, shared by every attempt
    cache/, home/           TRAINPORT_CACHE_DIR and (sandboxed) HOME, shared by every attempt

A rank's `.pid` file is created exclusively, by its shim (holding the shim's pid and kernel start
time, which together identify it even after pid reuse) or by cancel/observe to stop a shim that
has not started yet; whoever creates it first owns the rank.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.executors.local_shim import read_proc_stat, write_atomically


@dataclass(frozen=True)
class AttemptFiles:
    run_dir: Path
    attempt: int

    @property
    def folder(self) -> Path:
        return self.run_dir / f"attempt-{self.attempt}"

    @property
    def tombstone(self) -> Path:
        return self.run_dir / f"attempt-{self.attempt}.cleaned"

    @property
    def launch_path(self) -> Path:
        return self.folder / "launch.json"

    @property
    def cancel_path(self) -> Path:
        return self.folder / "cancel.json"

    @property
    def workdir(self) -> Path:
        return self.folder / "work"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def cache(self) -> Path:
        return self.run_dir / "cache"

    @property
    def home(self) -> Path:
        return self.run_dir / "home"

    def rank_file(self, rank: int, suffix: str) -> Path:
        return self.folder / "ranks" / f"rank-{rank}.{suffix}"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise launch, cancel and cleanup of this attempt across processes."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / f"attempt-{self.attempt}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def launch_record(self) -> dict[str, Any] | None:
        return read_json(self.launch_path)

    def claim(self, rank: int, record: dict[str, Any]) -> bool:
        """Take a rank that no shim has claimed, so none ever starts it."""
        return write_atomically(self.rank_file(rank, "pid"), record, exclusive=True)

    def identity(self, rank: int) -> dict[str, Any] | None:
        return read_json(self.rank_file(rank, "pid"))

    def exit_record(self, rank: int) -> dict[str, Any] | None:
        return read_json(self.rank_file(rank, "exit"))

    def record_exit(self, rank: int, record: dict[str, Any]) -> None:
        """Write an exit record unless the shim wrote one (it knows more)."""
        write_atomically(self.rank_file(rank, "exit"), record, exclusive=True)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return loaded if isinstance(loaded, dict) else None


def shim_alive(identity: dict[str, Any]) -> bool:
    """The pid runs, is not a zombie, and is the very process that claimed the rank."""
    stat = read_proc_stat(int(identity["pid"]))
    if stat is None or stat[0] in {"Z", "X"}:
        return False
    started = identity.get("start_time")
    return started is None or int(stat[19]) == started


def session_members(session_id: int) -> list[int]:
    """Live processes of a shim's session: the shim and everything its command started."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_proc_stat(int(entry))
            if stat and int(stat[3]) == session_id and stat[0] not in {"Z", "X"}:
                members.append(int(entry))
    return members


def signal_session(session_id: int, signum: signal.Signals) -> None:
    for pid in session_members(session_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):  # exited in between
            os.kill(pid, signum)


def attempt_files(state_dir: Path) -> Iterator[AttemptFiles]:
    """Every launched attempt under `state_dir`, in a stable order."""
    for launch in sorted(state_dir.glob("runs/*/attempt-*/launch.json")):
        number = launch.parent.name.removeprefix("attempt-")
        if number.isdigit():
            yield AttemptFiles(launch.parent.parent, int(number))

"""Run log lines, and the local spool their writers append to before they reach the database.

A stored line is `<RFC 3339 UTC timestamp> <stream> <text>` (stream is `stdout`, `stderr` or
`system`), with the run's secret values replaced by `***` (`format_lines`). The spool holds one
append-only file per (run, attempt, rank) under its root, `<run_id>/attempt-<n>/rank-<r>.log`,
and `rank-<r>.done` once the writer has written its last line. The database holds what every
reader sees (core/log_archive.py).

Standard library only: the local executor's shim imports this module on every process start.
For the same reason the records below are plain value classes (`Record`), not dataclasses:
`dataclasses` imports `inspect`, ~19 ms of CPU at every rank's start (issue 17).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

CHUNK_BYTES = 256 * 1024
MAX_LINE_BYTES = 64 * 1024  # longer output lines are split, so one line never grows unbounded
STREAMS = ("stdout", "stderr", "system")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ATTEMPT_DIR = re.compile(r"^attempt-(\d+)$")
_RANK_FILE = re.compile(r"^rank-(\d+)\.log$")
REDACTED = "***"
MIN_REDACTED_LINE = 8  # lines of a multi-line secret shorter than this are not hunted alone


def redaction_targets(values: Iterable[str]) -> tuple[str, ...]:
    """What a writer replaces: each value, and each long-enough line of a multi-line one (a
    PEM key printed line by line), longest first so a value is never half-replaced."""
    targets = {value for value in values if value}
    for value in list(targets):
        targets.update(
            line for line in value.splitlines() if len(line.strip()) >= MIN_REDACTED_LINE
        )
    return tuple(sorted(targets, key=len, reverse=True))


def timestamp(now: datetime | None = None) -> str:
    """RFC 3339 in UTC with microseconds, e.g. `2025-01-31T12:00:00.123456Z`."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_lines(stream: str, text: str, redact: tuple[str, ...], time: str = "") -> bytes:
    """Stored form of `text`: one `<time> <stream> <line>` per line, every `redact` target
    (from `redaction_targets`) replaced by `***`; `time` defaults to now."""
    prefix = f"{time or timestamp()} {stream} "
    for value in redact:
        if value in text:
            text = text.replace(value, REDACTED)
    lines = text.removesuffix("\n").split("\n")
    return "".join(f"{prefix}{line}\n" for line in lines).encode(errors="replace")


class Record:
    """Equality, hash and repr from `_fields`, as a frozen dataclass has (without `inspect`)."""

    _fields: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"


class LogLine(Record):
    _fields = ("time", "stream", "text")

    def __init__(self, time: str, stream: str, text: str) -> None:
        self.time, self.stream, self.text = time, stream, text

    @classmethod
    def parse(cls, line: str) -> LogLine:
        """Split a stored line; text that does not follow the format is kept whole."""
        time, _, rest = line.partition(" ")
        stream, _, text = rest.partition(" ")
        if stream not in STREAMS:
            return cls("", "", line)
        return cls(time, stream, text)


class LogKey(Record):
    """One rank's log of one attempt of a run."""

    _fields = ("run_id", "attempt", "rank")

    def __init__(self, run_id: str, attempt: int, rank: int) -> None:
        self.run_id, self.attempt, self.rank = run_id, attempt, rank


class LogRef(Record):
    """One rank's log of one attempt."""

    _fields = ("path", "done_path")

    def __init__(self, path: Path, done_path: Path) -> None:
        self.path, self.done_path = path, done_path

    @property
    def finished(self) -> bool:
        return self.done_path.exists()


class LogWriter:
    """Appends timestamped lines to one rank's log; safe to share between threads.

    Every value in `redact` (the run's secrets) is replaced by `***` before a line is stored:
    a safety net for a run that prints its secret, not a boundary against one that encodes it.
    """

    def __init__(self, ref: LogRef, redact: Iterable[str] = ()) -> None:
        ref.path.parent.mkdir(parents=True, exist_ok=True)
        self._ref = ref
        self._redact = redaction_targets(redact)
        # Re-entrant: a signal handler on the main thread may write while it holds the lock.
        self._lock = threading.RLock()
        # O_APPEND: every write lands at the end even if another writer (a retried shim) exists.
        self._fd = os.open(ref.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)

    def write(self, stream: str, text: str) -> None:
        """One line per line of `text`, all with the same timestamp, in one append."""
        data = format_lines(stream, text, self._redact)
        with self._lock:
            os.write(self._fd, data)

    def close(self, *, finished: bool = True) -> None:
        """Close the file; `finished` tells followers that no line will ever be added."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        if finished:
            self._ref.done_path.touch()


class LogStore:
    """A filesystem spool of rank logs; paths are derived, never taken as input.

    The local executor's shims write here; the worker ships each file to the database
    (workers/executors/local_logs.py), which is what the API reads.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def ref(self, run_id: str, attempt: int, rank: int) -> LogRef:
        if not _SAFE_ID.match(run_id) or attempt < 0 or rank < 0:
            raise ValueError(f"bad log coordinates {run_id!r}/{attempt}/{rank}")
        folder = self.root / run_id / f"attempt-{attempt}"
        return LogRef(folder / f"rank-{rank}.log", folder / f"rank-{rank}.done")

    def writer(self, run_id: str, attempt: int, rank: int, redact: Iterable[str] = ()) -> LogWriter:
        return LogWriter(self.ref(run_id, attempt, rank), redact)

    def mark_finished(self, run_id: str, attempt: int, rank: int) -> None:
        """For an executor that finds a writer gone (a lost process): no more lines will come."""
        ref = self.ref(run_id, attempt, rank)
        ref.path.parent.mkdir(parents=True, exist_ok=True)
        ref.path.touch()
        ref.done_path.touch()

    def streams(self) -> Iterator[LogKey]:
        """Every rank's log in the spool."""
        for run_id in _listdir(self.root):
            for entry in _listdir(self.root / run_id) if _SAFE_ID.match(run_id) else []:
                attempt = _ATTEMPT_DIR.match(entry)
                for name in _listdir(self.root / run_id / entry) if attempt else []:
                    if attempt and (rank := _RANK_FILE.match(name)):
                        yield LogKey(run_id, int(attempt.group(1)), int(rank.group(1)))

    def remove(self, run_id: str, attempt: int, rank: int) -> None:
        """Delete a rank's spooled log (it is stored elsewhere now), and folders left empty."""
        ref = self.ref(run_id, attempt, rank)
        ref.path.unlink(missing_ok=True)
        ref.done_path.unlink(missing_ok=True)
        for folder in (ref.path.parent, ref.path.parent.parent):
            try:
                folder.rmdir()
            except OSError:  # not empty (other ranks, other attempts) or already gone
                return


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def attempt_is_over(run_status_terminal: bool, run_attempt: int, attempt: int) -> bool:
    """A log can stop growing once its run has finished or moved on to a later attempt."""
    return run_status_terminal or run_attempt > attempt


def log_may_appear(started: bool, run_attempt: int, attempt: int, rank: int, ranks: int) -> bool:
    """A log not stored yet that a follower should wait for: the rank belongs to the attempt
    that is starting or running now, whose first line may simply not have been shipped."""
    return started and attempt == run_attempt >= 1 and 0 <= rank < ranks

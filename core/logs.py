"""Durable run logs: one append-only file per (run, attempt, rank); executors write, the API reads.

Layout under the store's root: `<run_id>/attempt-<n>/rank-<r>.log`, one line per output line,
`<RFC 3339 UTC timestamp> <stream> <text>` (stream is `stdout`, `stderr` or `system`), and
`rank-<r>.done` once the writer has written its last line. Readers only ever open files
read-only and in bounded chunks, so a reader never blocks the writer and a 5 GB log is streamed,
never loaded: `tail` seeks back from the end, `follow` polls the file's growth.

Standard library only: the local executor's shim imports this module on every process start.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

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


@dataclass(frozen=True)
class LogLine:
    time: str
    stream: str
    text: str

    @classmethod
    def parse(cls, line: str) -> LogLine:
        """Split a stored line; text that does not follow the format is kept whole."""
        time, _, rest = line.partition(" ")
        stream, _, text = rest.partition(" ")
        if stream not in STREAMS:
            return cls("", "", line)
        return cls(time, stream, text)


@dataclass(frozen=True)
class LogRef:
    """One rank's log of one attempt."""

    path: Path
    done_path: Path

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
        prefix = f"{timestamp()} {stream} "
        for value in self._redact:
            if value in text:
                text = text.replace(value, REDACTED)
        lines = text.removesuffix("\n").split("\n")
        data = "".join(f"{prefix}{line}\n" for line in lines).encode(errors="replace")
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
    """The filesystem log store (the embedded default); paths are derived, never taken as input."""

    def __init__(self, root: Path, poll_interval: float = 0.1, over_interval: float = 1.0) -> None:
        self.root = Path(root)
        self.poll_interval = poll_interval  # how often a follower looks for new lines
        self.over_interval = over_interval  # how often it asks whether the attempt is over

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

    def attempts(self, run_id: str) -> list[int]:
        """Attempts with at least one rank's log, ascending."""
        if not _SAFE_ID.match(run_id):
            return []
        found = []
        for entry in _listdir(self.root / run_id):
            match = _ATTEMPT_DIR.match(entry)
            if match and self.ranks(run_id, int(match.group(1))):
                found.append(int(match.group(1)))
        return sorted(found)

    def ranks(self, run_id: str, attempt: int) -> list[int]:
        folder = self.ref(run_id, attempt, 0).path.parent
        return sorted(int(m.group(1)) for e in _listdir(folder) if (m := _RANK_FILE.match(e)))

    def tail(self, ref: LogRef, lines: int) -> list[str]:
        """The last `lines` lines, reading backwards from the end in chunks."""
        with ref.path.open("rb") as file:
            end = file.seek(0, os.SEEK_END)
            start = tail_offset(file, end, lines)
            file.seek(start)
            data = file.read(end - start)
        return data.decode(errors="replace").splitlines()

    async def read(
        self,
        ref: LogRef,
        tail: int | None = None,
        follow: bool = False,
        is_over: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[bytes]:
        """Chunks of whole lines: the last `tail` lines (all when None), then, with `follow`,
        new lines as they are written until the writer is done (or `is_over()`, asked every
        `over_interval` seconds, says the attempt ended) and the file is fully read."""
        with ref.path.open("rb") as file:
            end = file.seek(0, os.SEEK_END)
            file.seek(0 if tail is None else tail_offset(file, end, tail))
            if not follow:
                async for chunk in _copy_upto(file, end):
                    yield chunk
                return
            async for chunk in self._follow(file, ref, is_over):
                yield chunk

    async def _follow(
        self, file: IO[bytes], ref: LogRef, is_over: Callable[[], Awaitable[bool]] | None
    ) -> AsyncIterator[bytes]:
        import asyncio  # here, not at the top: every rank's shim imports this module at start

        partial = b""
        polls_per_check = max(1, round(self.over_interval / self.poll_interval))
        polls = 0
        while True:
            # Look for the end *before* reading: everything written before it is then read.
            over = ref.finished or (
                is_over is not None and polls % polls_per_check == 0 and await is_over()
            )
            polls += 1
            while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
                whole, _, partial = (partial + chunk).rpartition(b"\n")
                if whole:
                    yield whole + b"\n"
            if over:
                if partial:
                    yield partial + b"\n"
                return
            await asyncio.sleep(self.poll_interval)


async def _copy_upto(file: IO[bytes], end: int) -> AsyncIterator[bytes]:
    """Stream from the current position to `end` (the size when reading began)."""
    import asyncio  # see _follow

    remaining = end - file.seek(0, os.SEEK_CUR)
    while remaining > 0:
        chunk = await asyncio.to_thread(file.read, min(CHUNK_BYTES, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk if remaining > 0 or chunk.endswith(b"\n") else chunk + b"\n"


def tail_offset(file: IO[bytes], end: int, lines: int) -> int:
    """Byte offset where the last `lines` lines of a file of size `end` begin."""
    if lines <= 0:
        return end
    position = end
    newlines = 0
    # A final newline ends the last line rather than starting an empty one.
    wanted = lines + 1 if end and _byte_at(file, end - 1) == b"\n" else lines
    while position > 0:
        step = min(CHUNK_BYTES, position)
        position -= step
        file.seek(position)
        block = file.read(step)
        in_block = block.count(b"\n")
        if newlines + in_block >= wanted:
            index = len(block)
            for _ in range(wanted - newlines):
                index = block.rindex(b"\n", 0, index)
            return position + index + 1
        newlines += in_block
    return 0


def _byte_at(file: IO[bytes], offset: int) -> bytes:
    file.seek(offset)
    return file.read(1)


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def attempt_is_over(run_status_terminal: bool, run_attempt: int, attempt: int) -> bool:
    """A log can stop growing once its run has finished or moved on to a later attempt."""
    return run_status_terminal or run_attempt > attempt

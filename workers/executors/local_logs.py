"""Ships the local executor's spool files into the database's run logs (core/log_archive.py).

Each rank's shim appends its output to a spool file on this machine (core.logs.LogWriter:
standard library only, so a rank starts fast and never waits for the database). A thread in
each worker process that runs a local executor looks at the spool every `flush_seconds` and
appends what is new, in whole lines, to the rank's stream, with the spool file's byte offset as
the stream's cursor. A worker killed half-way leaves the cursor after the last stored line, and
the next shipper (the restarted worker, or another worker process on this machine) continues
from there: nothing is lost and nothing stored twice. Two shippers at once are kept apart by a
lock on the spool file, and one holding a stale offset has its append refused by the archive.
Once the writer is done (its `.done` marker, or the executor says so for a lost or stopped
rank), the rest is shipped, the stream finished and the spool files removed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from typing import IO

from core.log_archive import LogArchive
from core.logs import CHUNK_BYTES, LogKey, LogStore

log = logging.getLogger("trainport.executors.local.logs")


class SpoolShipper:
    def __init__(self, spool: LogStore, archive: LogArchive) -> None:
        self.spool = spool
        self.archive = archive
        self.interval = archive.flush_seconds
        self._offsets: dict[LogKey, int] = {}  # stored up to here, as far as this process knows
        self._closed: set[LogKey] = set()  # finished streams this process has seen
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Ship in the background from now on (once per process; later calls do nothing)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-ship", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                for key in self.spool.streams():
                    self.ship(key, wait=False)
            except Exception as error:  # the database is away: the spool keeps it meanwhile
                log.log(logging.DEBUG if failing else logging.WARNING, "log shipping: %s", error)
                failing = True
            else:
                failing = False

    def ship(self, key: LogKey, *, finish: bool = False, wait: bool = True) -> None:
        """Store what is new in `key`'s spool file. Once the writer is done, or with `finish`
        (its process is gone), store all of it, then finish the stream and remove the file.
        `wait=False` skips a file another shipper is busy with."""
        if key in self._closed:
            return
        ref = self.spool.ref(key.run_id, key.attempt, key.rank)
        try:
            file = ref.path.open("rb")
        except FileNotFoundError:
            if finish:  # a rank that never wrote: an empty, finished log
                self._finish(key, self._offsets.get(key, 0))
            return
        with file:
            if not _lock(file, wait):
                return
            done = finish or ref.finished  # before reading: all written before it is then read
            offset: int | None = self._offsets.get(key, 0)
            if done or os.fstat(file.fileno()).st_size > (offset or 0):
                offset = self._copy(file, key, offset or 0, done)
            if done:
                self._finish(key, offset)

    def _copy(self, file: IO[bytes], key: LogKey, offset: int, done: bool) -> int | None:
        """Append the file from `offset` on (once `done`, its last lines finish the stream in
        the same transaction); the offset reached, or None if the stream is now finished.

        A stream this process has not written to yet is taken to start at 0 rather than read
        first: if it does not (another shipper, or this worker before a restart, stored some),
        the append is refused with the stream's head, and the copy goes on from its cursor."""
        while True:
            appended = None
            for data, after, last in _with_last(_lines(file, offset, done)):
                appended = self.archive.append(
                    key, data, expected=_cursor(offset), cursor=_cursor(after), finish=done and last
                )
                if not appended.stored:
                    break
                offset = self._offsets[key] = after
            else:
                return None if appended is not None and appended.head.finished else offset
            if appended.head.finished:  # another shipper finished it
                return None
            # Another shipper got further: go on from where it stopped.
            offset = self._offsets[key] = int(appended.head.cursor or 0)

    def _finish(self, key: LogKey, offset: int | None) -> None:
        if offset is not None:  # None: finished already
            self.archive.finish(key)
        self._closed.add(key)
        self._offsets.pop(key, None)
        self.spool.remove(key.run_id, key.attempt, key.rank)


def _cursor(offset: int) -> str:
    """A spool offset as a stream cursor; a new stream's cursor is empty, meaning 0."""
    return str(offset) if offset else ""


def _with_last(items: Iterator[tuple[bytes, int]]) -> Iterator[tuple[bytes, int, bool]]:
    """Each item, and whether it is the last one."""
    held = next(items, None)
    while held is not None:
        following = next(items, None)
        yield *held, following is None
        held = following


def _lock(file: IO[bytes], wait: bool) -> bool:
    """An exclusive lock on the spool file for this shipper (released when it is closed)."""
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _lines(file: IO[bytes], offset: int, done: bool) -> Iterator[tuple[bytes, int]]:
    """(whole lines, the file offset after them) from `offset` on; once the writer is `done`,
    a last line without its newline too. Lines are shorter than a chunk (MAX_LINE_BYTES)."""
    file.seek(offset)
    while block := file.read(CHUNK_BYTES):
        cut = block.rfind(b"\n") + 1
        if cut:
            yield block[:cut], offset + cut
        elif done or len(block) == CHUNK_BYTES:
            yield block + b"\n", offset + len(block)
            cut = len(block)
        else:
            return  # a line still being written
        offset += cut
        file.seek(offset)

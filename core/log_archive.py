"""Run logs in the database: what every API replica reads and no pod restart loses.

Writers run beside the ranks (the local executor ships its spool files, the Kubernetes
executor copies pod logs) and append chunks of whole lines, already timestamped and redacted
(core.logs.format_lines), to the rank's stream: a `log_streams` head row and its `log_chunks`
at contiguous byte offsets. Each append names the writer's source position it continues from
(`expected`) and the one it reaches (`cursor`); the head is locked and an append whose
`expected` is not the stored cursor is refused, so a restarted or a second writer resumes where
the stored log ends and never stores a line twice. A stream holds at most `max_bytes`; beyond,
one `system` line says so and later output only moves the cursor. On PostgreSQL an append also
sends `NOTIFY trainport_log_appends` with the run id, which wakes the API's followers at once;
elsewhere (SQLite) followers poll.

Readers never load a whole log: a tail counts lines from the stored per-chunk counts, walking
back from the end, and a read pages through chunks from a byte offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from core.logs import CHUNK_BYTES, LogKey, format_lines
from core.models import LogChunk, LogStream, utcnow
from core.notify import LOG_CHANNEL, log_hub

PAGE_CHUNKS = 8  # chunks per read query: at most 2 MiB in memory per reader
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
TRUNCATED = (
    "this rank's log reached {limit} bytes (TRAINPORT_LOG_MAX_BYTES_PER_RANK); "
    "later output was not stored"
)


@dataclass(frozen=True)
class Head:
    """What a writer needs to know of a stream: where its source stands, and if it is closed."""

    size: int = 0
    cursor: str = ""
    finished: bool = False


@dataclass(frozen=True)
class Appended:
    """`stored` False: the stream had moved on (another writer) or was finished; see `head`."""

    stored: bool
    head: Head


class LogArchive:
    """Appends to and reads from the database's run logs through `factory`'s sessions."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        max_bytes: int = DEFAULT_MAX_BYTES,
        flush_seconds: float = 0.2,
        poll_interval: float = 0.2,
        over_interval: float = 1.0,
        settle_seconds: float = 3.0,
    ) -> None:
        self.factory = factory
        self.max_bytes = max_bytes
        self.flush_seconds = flush_seconds  # how often writers store a live rank's new lines
        self.poll_interval = poll_interval  # a follower's look for new chunks without a NOTIFY
        self.over_interval = over_interval  # how often a follower asks whether the attempt ended
        # After the attempt ended, how long a follower waits for its writer to finish the stream
        # (a writer drains the last lines just after the run settles).
        self.settle_seconds = settle_seconds

    # -- writing ------------------------------------------------------------------------------

    def head(self, key: LogKey) -> Head:
        with session_scope(self.factory) as session:
            row = session.get(LogStream, (key.run_id, key.attempt, key.rank))
            return Head() if row is None else _head(row)

    def append(
        self, key: LogKey, data: bytes, *, expected: str, cursor: str, finish: bool = False
    ) -> Appended:
        """Store `data` (whole lines) after the stream's end if the stream's cursor is
        `expected`, and move the cursor to `cursor`; with `finish`, the writer's last lines:
        the stream is closed in the same transaction."""
        with session_scope(self.factory) as session:
            row = _lock_stream(session, key)
            if row.finished or row.cursor != expected:
                return Appended(False, _head(row))
            self._store(session, key, row, data)
            row.cursor, row.updated_at, row.finished = cursor, utcnow(), finish
            _notify(session, key.run_id)
            return Appended(True, _head(row))

    def finish(self, key: LogKey, note: bytes = b"") -> None:
        """Close the stream whatever its cursor (its writer is done, or gone for good), after
        `note` (formatted lines: why its end is missing, say)."""
        with session_scope(self.factory) as session:
            row = _lock_stream(session, key)
            if not row.finished:
                self._store(session, key, row, note)
                row.finished, row.updated_at = True, utcnow()
                _notify(session, key.run_id)

    def _store(self, session: Session, key: LogKey, row: LogStream, data: bytes) -> None:
        for piece in _pieces(self._fit(row, data)):
            lines = piece.count(b"\n")
            session.add(LogChunk(**_where(key), start=row.size, lines=lines, data=piece))
            row.size += len(piece)

    def _fit(self, row: LogStream, data: bytes) -> bytes:
        """`data`, or what fits under `max_bytes` followed by the one line that says so."""
        if row.truncated:
            return b""
        if row.size + len(data) <= self.max_bytes:
            return data
        note = format_lines("system", TRUNCATED.format(limit=self.max_bytes), ())
        room = max(0, self.max_bytes - row.size - len(note))
        row.truncated = True
        return data[: data.rfind(b"\n", 0, room) + 1] + note

    # -- reading ------------------------------------------------------------------------------

    def tail_start(self, key: LogKey, lines: int) -> int:
        """Byte offset where the last `lines` lines begin, from the chunks' line counts."""
        with session_scope(self.factory) as session:
            if lines <= 0:
                return self._size(session, key)
            seen = 0
            counts = select(LogChunk.start, LogChunk.lines).where(*_match(LogChunk, key))
            for start, count in session.execute(counts.order_by(LogChunk.start.desc())):
                if seen + count >= lines:
                    data = session.scalar(
                        select(LogChunk.data).where(*_match(LogChunk, key), LogChunk.start == start)
                    )
                    return start + _skip_lines(data or b"", seen + count - lines)
                seen += count
            return 0

    def _size(self, session: Session, key: LogKey) -> int:
        row = session.get(LogStream, (key.run_id, key.attempt, key.rank))
        return 0 if row is None else row.size

    def page(self, key: LogKey, position: int, end: int | None = None) -> tuple[bytes, int]:
        """Stored bytes from `position` (up to `end`), a page at a time, and where they end."""
        with session_scope(self.factory) as session:
            first = (
                select(func.max(LogChunk.start))
                .where(*_match(LogChunk, key), LogChunk.start <= position)
                .scalar_subquery()
            )
            query = (
                select(LogChunk.start, LogChunk.data)
                .where(*_match(LogChunk, key), LogChunk.start >= func.coalesce(first, 0))
                .order_by(LogChunk.start)
                .limit(PAGE_CHUNKS)
            )
            parts = []
            for start, data in session.execute(query):
                if end is not None and start >= end:
                    break
                parts.append(data[max(0, position - start) :])
                position = start + len(data)
            return b"".join(parts), position

    async def read(
        self,
        key: LogKey,
        tail: int | None = None,
        follow: bool = False,
        is_over: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[bytes]:
        """The last `tail` lines (all when None), then, with `follow`, new lines as they are
        stored until the stream is finished, or the attempt is over (`is_over()`, asked every
        `over_interval` seconds) and its writer had `settle_seconds` to finish it."""
        position = 0 if tail is None else await asyncio.to_thread(self.tail_start, key, tail)
        if not follow:
            end = (await asyncio.to_thread(self.head, key)).size
            while position < end:
                data, position = await asyncio.to_thread(self.page, key, position, end)
                if not data:
                    return
                yield data
            return
        async for data in self._follow(key, position, is_over):
            yield data

    async def _follow(
        self, key: LogKey, position: int, is_over: Callable[[], Awaitable[bool]] | None
    ) -> AsyncIterator[bytes]:
        flag = log_hub.subscribe(key.run_id)
        end = _End(self, key, is_over)
        try:
            while True:
                flag.clear()  # before reading: a NOTIFY from here on wakes the wait below
                over = await end.reached()  # before reading: all stored before it is then read
                while True:
                    data, position = await asyncio.to_thread(self.page, key, position)
                    if not data:
                        break
                    yield data
                if over:
                    return
                await _wait(flag, self.poll_interval)
        finally:
            log_hub.unsubscribe(key.run_id, flag)


class _End:
    """When a follow may stop: its stream is finished, or its attempt ended (`is_over`) and the
    writer had `settle_seconds` to finish the stream (a writer that died never will)."""

    def __init__(
        self, archive: LogArchive, key: LogKey, is_over: Callable[[], Awaitable[bool]] | None
    ) -> None:
        self._archive = archive
        self._key = key
        self._is_over = is_over
        self._asked_at = -float("inf")
        self._ended_at: float | None = None

    async def reached(self) -> bool:
        if (await asyncio.to_thread(self._archive.head, self._key)).finished:
            return True
        now = time.monotonic()
        ask = self._is_over is not None and now - self._asked_at >= self._archive.over_interval
        if ask and self._ended_at is None:
            self._asked_at = now
            assert self._is_over is not None
            if await self._is_over():
                self._ended_at = now
        return self._ended_at is not None and now - self._ended_at >= self._archive.settle_seconds


def log_attempts(session: Session, run_id: str) -> list[int]:
    """Attempts of the run with a log, ascending, in the caller's transaction (on SQLite a
    second one, from the same thread, would wait for the caller's lock)."""
    query = select(LogStream.attempt).where(LogStream.run_id == run_id).distinct()
    return sorted(session.scalars(query))


def log_ranks(session: Session, run_id: str, attempt: int) -> list[int]:
    query = select(LogStream.rank).where(LogStream.run_id == run_id, LogStream.attempt == attempt)
    return sorted(session.scalars(query))


def delete_logs(session: Session, run_id: str) -> None:
    """Remove every log of a run, in the caller's transaction (a deleted run's logs go too)."""
    for table in (LogChunk, LogStream):
        session.execute(delete(table).where(table.run_id == run_id))


async def _wait(flag: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(flag.wait(), timeout)


def _notify(session: Session, run_id: str) -> None:
    """Wake the followers of the run's logs in every API process, once this commits."""
    if session.get_bind().dialect.name == "postgresql":
        payload = {"channel": LOG_CHANNEL, "id": run_id}
        session.execute(text("SELECT pg_notify(:channel, :id)"), payload)


def _lock_stream(session: Session, key: LogKey) -> LogStream:
    """The stream's head, created if missing, locked until commit."""
    dialect = session.get_bind().dialect.name
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(LogStream)
    session.execute(
        statement.values(
            **_where(key), size=0, cursor="", finished=False, truncated=False, updated_at=utcnow()
        ).on_conflict_do_nothing(index_elements=["run_id", "attempt", "rank"])
    )
    query = select(LogStream).where(*_match(LogStream, key)).with_for_update()
    return session.scalars(query.execution_options(populate_existing=True)).one()


def _where(key: LogKey) -> dict[str, object]:
    return {"run_id": key.run_id, "attempt": key.attempt, "rank": key.rank}


def _match(table: type[LogChunk] | type[LogStream], key: LogKey) -> tuple[ColumnElement[bool], ...]:
    return (table.run_id == key.run_id, table.attempt == key.attempt, table.rank == key.rank)


def _head(row: LogStream) -> Head:
    return Head(row.size, row.cursor, row.finished)


def _pieces(data: bytes) -> Iterator[bytes]:
    """`data` cut at line ends into chunks of at most CHUNK_BYTES (a longer line stays whole)."""
    while data:
        cut = len(data) if len(data) <= CHUNK_BYTES else data.rfind(b"\n", 0, CHUNK_BYTES) + 1
        cut = cut or data.find(b"\n") + 1 or len(data)
        yield data[:cut]
        data = data[cut:]


def _skip_lines(data: bytes, lines: int) -> int:
    """Offset in `data` just after its first `lines` lines."""
    index = 0
    for _ in range(lines):
        index = data.index(b"\n", index) + 1
    return index

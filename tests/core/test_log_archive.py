"""The run logs in the database: bounded tails of large logs, following, and safe appends.

Each test runs on PostgreSQL and on SQLite (the embedded mode).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from core.db import session_scope
from core.log_archive import LogArchive, log_attempts, log_ranks
from core.logs import CHUNK_BYTES, LogKey, LogLine, format_lines
from tests.factories import log_archive

MiB = 1024 * 1024


@pytest.fixture(params=["postgres", "sqlite"])
def archive(request: pytest.FixtureRequest) -> LogArchive:
    return log_archive(request.getfixturevalue(f"{request.param}_url"))


def new_key(rank: int = 0, attempt: int = 1) -> LogKey:
    return LogKey(f"run_{secrets.token_hex(6)}", attempt, rank)


def lines_of(*texts: str) -> bytes:
    return b"".join(format_lines("stdout", text, ()) for text in texts)


def store(archive: LogArchive, key: LogKey, data: bytes) -> None:
    cursor = archive.head(key).cursor
    assert archive.append(key, data, expected=cursor, cursor=str(int(cursor or 0) + 1)).stored


def collect(chunks: AsyncIterator[bytes]) -> list[str]:
    async def read_all() -> list[str]:
        return [line async for chunk in chunks for line in chunk.decode().splitlines()]

    return asyncio.run(read_all())


def test_tail_of_a_large_log_reads_only_its_end(archive: LogArchive) -> None:
    key = new_key()
    block = b"".join(b"2025-01-01T00:00:00.000000Z stdout step %06d\n" % i for i in range(5_000))
    for _ in range(32 * MiB // len(block)):
        store(archive, key, block)
    store(archive, key, b"2025-01-01T00:00:01.000000Z stdout the very last line\n")
    assert archive.head(key).size > 30 * MiB

    tracemalloc.start()
    started = time.perf_counter()
    lines = collect(archive.read(key, tail=1000))
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert len(lines) == 1000
    assert lines[-1].endswith("stdout the very last line")
    assert lines[-2].endswith("stdout step 004999")
    assert peak < 4 * MiB, f"tail used {peak / MiB:.1f} MiB"
    assert elapsed < 1.0, f"tail took {elapsed:.2f}s"


def test_tail_counts_lines_across_chunks(archive: LogArchive) -> None:
    key = new_key()
    store(archive, key, lines_of("a", "b"))
    store(archive, key, lines_of("c"))

    tails = [[LogLine.parse(x).text for x in collect(archive.read(key, tail=n))] for n in range(5)]

    assert tails == [[], ["c"], ["b", "c"], ["a", "b", "c"], ["a", "b", "c"]]


def test_a_full_read_streams_every_chunk_of_a_log_larger_than_a_page(archive: LogArchive) -> None:
    key = new_key()
    line = "x" * 1000
    count = 20 * CHUNK_BYTES // 1000
    store(archive, key, lines_of(*[line] * count))

    assert len(collect(archive.read(key))) == count


def test_follow_yields_lines_as_they_are_stored_and_ends_when_the_stream_finishes(
    archive: LogArchive,
) -> None:
    archive = LogArchive(archive.factory, poll_interval=0.01)
    key = new_key()
    store(archive, key, lines_of("first"))

    async def follow() -> list[LogLine]:
        seen: list[LogLine] = []
        async for chunk in archive.read(key, follow=True):
            seen += [LogLine.parse(line) for line in chunk.decode().splitlines()]
            if len(seen) == 1:  # only now, with the reader waiting, does the writer go on
                await asyncio.to_thread(store, archive, key, lines_of("second\nthird"))
                await asyncio.to_thread(archive.finish, key)
        return seen

    seen = asyncio.run(follow())

    assert [line.text for line in seen] == ["first", "second", "third"]
    assert all(line.time.endswith("Z") and line.stream == "stdout" for line in seen)


def test_follow_stops_after_the_attempt_ended_even_if_its_writer_never_finishes(
    archive: LogArchive,
) -> None:
    archive = LogArchive(
        archive.factory, poll_interval=0.01, over_interval=0.05, settle_seconds=0.2
    )
    key = new_key()
    store(archive, key, lines_of("last words"))  # and the writer dies without finishing
    checks = 0

    async def over() -> bool:
        nonlocal checks
        checks += 1
        return checks >= 2

    started = time.monotonic()
    lines = collect(archive.read(key, follow=True, is_over=over))

    assert [LogLine.parse(line).text for line in lines] == ["last words"]
    assert checks == 2
    assert 0.2 <= time.monotonic() - started < 2


def test_listing_finds_attempts_and_ranks_that_have_logs(archive: LogArchive) -> None:
    run_id = new_key().run_id
    for attempt, rank in [(1, 0), (2, 0), (2, 1), (10, 3)]:
        archive.finish(LogKey(run_id, attempt, rank))

    with session_scope(archive.factory) as session:
        assert log_attempts(session, run_id) == [1, 2, 10]
        assert log_ranks(session, run_id, 2) == [0, 1]
        assert log_attempts(session, "run_other") == []


def test_an_append_from_a_writer_behind_the_stored_cursor_is_refused(
    archive: LogArchive,
) -> None:
    key = new_key()
    assert archive.append(key, lines_of("one"), expected="", cursor="10").stored
    stale = archive.append(key, lines_of("one"), expected="", cursor="10")  # a restarted copy
    archive.finish(key)
    late = archive.append(key, lines_of("two"), expected="10", cursor="20")

    assert not stale.stored
    assert stale.head.cursor == "10"
    assert not late.stored
    assert late.head.finished
    assert [LogLine.parse(line).text for line in collect(archive.read(key))] == ["one"]


def test_a_log_over_its_limit_keeps_whole_lines_and_says_it_was_truncated(
    archive: LogArchive,
) -> None:
    archive = LogArchive(archive.factory, max_bytes=64 * 1024)
    key = new_key()
    line = "y" * 99
    for step in range(10):
        store(archive, key, lines_of(*[f"{step} {line}"] * 100))

    lines = [LogLine.parse(x) for x in collect(archive.read(key))]

    assert archive.head(key).size <= 64 * 1024
    assert all(x.stream == "stdout" and x.text.endswith(line) for x in lines[:-1])
    assert lines[-1].stream == "system"
    assert "reached 65536 bytes (TRAINPORT_LOG_MAX_BYTES_PER_RANK)" in lines[-1].text
    assert "later output was not stored" in lines[-1].text

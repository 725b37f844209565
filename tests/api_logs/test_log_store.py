"""The filesystem log store: bounded tails of huge files, and following a growing log."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

from core.logs import LogLine, LogStore

MiB = 1024 * 1024


def collect(chunks: AsyncIterator[bytes]) -> list[str]:
    async def read_all() -> list[str]:
        return [line async for chunk in chunks for line in chunk.decode().splitlines()]

    return asyncio.run(read_all())


def test_tail_of_a_200_mb_log_reads_only_its_end(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    ref = store.ref("run_big", 1, 0)
    ref.path.parent.mkdir(parents=True)
    block = b"".join(b"2025-01-01T00:00:00.000000Z stdout step %06d\n" % i for i in range(25_000))
    with ref.path.open("wb") as file:
        for _ in range(200 * MiB // len(block) + 1):
            file.write(block)
        file.write(b"2025-01-01T00:00:01.000000Z stdout the very last line\n")
    assert ref.path.stat().st_size > 200 * MiB

    tracemalloc.start()
    started = time.perf_counter()
    lines = store.tail(ref, 1000)
    streamed = collect(store.read(ref, tail=1000))
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert len(lines) == 1000
    assert lines[-1].endswith("stdout the very last line")
    assert lines[-2].endswith("stdout step 024999")
    assert streamed == lines
    assert peak < 4 * MiB, f"tail used {peak / MiB:.1f} MiB"
    assert elapsed < 1.0, f"tail took {elapsed:.2f}s"


def test_tail_counts_lines_with_or_without_a_final_newline(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    ref = store.ref("run_small", 1, 0)
    ref.path.parent.mkdir(parents=True)

    ref.path.write_bytes(b"a\nb\nc\n")
    assert [store.tail(ref, n) for n in (0, 1, 2, 5)] == [[], ["c"], ["b", "c"], ["a", "b", "c"]]
    ref.path.write_bytes(b"a\nb\nc")
    assert store.tail(ref, 2) == ["b", "c"]
    assert collect(store.read(ref, tail=1)) == ["c"]


def test_follow_yields_lines_as_they_are_written_and_ends_when_the_writer_finishes(
    tmp_path: Path,
) -> None:
    store = LogStore(tmp_path, poll_interval=0.01)
    writer = store.writer("run_live", 1, 0)
    writer.write("stdout", "first")

    async def follow() -> list[LogLine]:
        seen: list[LogLine] = []
        async for chunk in store.read(store.ref("run_live", 1, 0), follow=True):
            seen += [LogLine.parse(line) for line in chunk.decode().splitlines()]
            if len(seen) == 1:  # only now, with the reader waiting, does the writer go on
                writer.write("stderr", "second\nthird")
                writer.close(finished=True)
        return seen

    seen = asyncio.run(follow())

    assert [(line.stream, line.text) for line in seen] == [
        ("stdout", "first"),
        ("stderr", "second"),
        ("stderr", "third"),
    ]
    assert all(line.time.endswith("Z") for line in seen)


def test_follow_stops_when_the_attempt_is_over_even_if_the_writer_vanished(
    tmp_path: Path,
) -> None:
    store = LogStore(tmp_path, poll_interval=0.01, over_interval=0.05)
    writer = store.writer("run_gone", 1, 0)
    writer.write("stdout", "last words")  # and the writer dies without closing
    checks = 0

    async def over() -> bool:
        nonlocal checks
        checks += 1
        return checks >= 2

    lines = collect(store.read(store.ref("run_gone", 1, 0), follow=True, is_over=over))

    assert [LogLine.parse(line).text for line in lines] == ["last words"]
    assert checks == 2


def test_listing_finds_attempts_and_ranks_that_have_logs(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    for attempt, rank in [(1, 0), (2, 0), (2, 1), (10, 3)]:
        store.writer("run_list", attempt, rank).close(finished=False)

    assert store.attempts("run_list") == [1, 2, 10]
    assert store.ranks("run_list", 2) == [0, 1]
    assert store.attempts("run_other") == []
    assert store.attempts("../etc") == []

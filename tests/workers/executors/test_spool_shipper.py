"""The local executor's log shipping (workers/executors/local_logs.py): what a rank wrote reaches
the database's run log once, in as few write transactions as it can, on PostgreSQL and SQLite.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event

from core.log_archive import LogArchive
from core.logs import CHUNK_BYTES, LogKey, LogStore, format_lines
from tests.factories import log_archive
from workers.executors.local_logs import SpoolShipper


@pytest.fixture(params=["postgres", "sqlite"])
def archive(request: pytest.FixtureRequest) -> LogArchive:
    return log_archive(request.getfixturevalue(f"{request.param}_url"))


@contextmanager
def transactions(archive: LogArchive) -> Iterator[list[int]]:
    """How many transactions the archive's engine began meanwhile (in `counted[0]`)."""
    engine = archive.factory.kw["bind"]
    counted = [0]

    def began(_conn: object) -> None:
        counted[0] += 1

    event.listen(engine, "begin", began)
    try:
        yield counted
    finally:
        event.remove(engine, "begin", began)


def spooled(tmp_path: Path, *texts: str, done: bool = True) -> tuple[LogStore, LogKey]:
    spool, key = LogStore(tmp_path / "spool"), LogKey(f"run_{secrets.token_hex(6)}", 1, 0)
    writer = spool.writer(key.run_id, key.attempt, key.rank)
    for text in texts:
        writer.write("stdout", text)
    if done:
        writer.close()
    return spool, key


def stored(archive: LogArchive, key: LogKey) -> list[str]:
    data, _ = archive.page(key, 0)
    return data.decode().splitlines()


def test_a_finished_rank_s_log_is_stored_and_finished_in_one_transaction(
    archive: LogArchive, tmp_path: Path
) -> None:
    spool, key = spooled(tmp_path, "one", "two")
    with transactions(archive) as counted:
        SpoolShipper(spool, archive).ship(key)
    assert counted[0] == 1  # it was three: the head read, the append, the finish
    assert archive.head(key).finished
    assert [line.split(" ", 2)[-1] for line in stored(archive, key)][-2:] == ["one", "two"]
    assert not spool.ref(key.run_id, key.attempt, key.rank).path.exists()


def test_a_rank_that_wrote_nothing_is_finished_in_one_transaction(
    archive: LogArchive, tmp_path: Path
) -> None:
    spool, key = LogStore(tmp_path / "spool"), LogKey(f"run_{secrets.token_hex(6)}", 1, 0)
    with transactions(archive) as counted:
        SpoolShipper(spool, archive).ship(key, finish=True)
    assert counted[0] == 1
    assert archive.head(key).finished
    assert archive.head(key).size == 0


def test_a_long_log_is_stored_whole_and_finished_with_its_last_chunk(
    archive: LogArchive, tmp_path: Path
) -> None:
    texts = [f"line {n} " + "x" * 200 for n in range(3 * CHUNK_BYTES // 200)]
    spool, key = spooled(tmp_path, *texts)
    size = spool.ref(key.run_id, key.attempt, key.rank).path.stat().st_size
    with transactions(archive) as counted:
        SpoolShipper(spool, archive).ship(key)
    lines = stored(archive, key)
    assert [line.split(" ")[-2] for line in lines] == [str(n) for n in range(len(texts))]
    assert archive.head(key).finished
    # one append a chunk read from the file (each holds whole lines), the last one finishing
    assert counted[0] <= -(-size // (CHUNK_BYTES - 300))


def test_a_shipper_that_restarts_goes_on_from_the_stored_cursor(
    archive: LogArchive, tmp_path: Path
) -> None:
    """A new shipper (a restarted worker) knows no offset: its first append is refused by the
    stream's cursor and it goes on from there, storing nothing twice."""
    spool, key = spooled(tmp_path, "before", done=False)
    SpoolShipper(spool, archive).ship(key)  # stores "before", not finished
    assert not archive.head(key).finished
    writer = spool.writer(key.run_id, key.attempt, key.rank)
    writer.write("stdout", "after")
    writer.close()
    SpoolShipper(spool, archive).ship(key)
    texts = [line.split(" ", 2)[-1] for line in stored(archive, key)]
    assert texts.count("before") == 1
    assert texts.count("after") == 1
    assert archive.head(key).finished


def test_a_stream_another_shipper_finished_is_left_alone(
    archive: LogArchive, tmp_path: Path
) -> None:
    spool, key = spooled(tmp_path, "late")
    archive.finish(key, format_lines("system", "stopped", ()))
    SpoolShipper(spool, archive).ship(key)
    assert [line.split(" ", 2)[-1] for line in stored(archive, key)] == ["stopped"]
    assert not spool.ref(key.run_id, key.attempt, key.rank).path.exists()

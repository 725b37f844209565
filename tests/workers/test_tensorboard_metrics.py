"""`metrics.tensorboard_dir` on the local executor (issue 14): the scalars a script writes with
a real TensorBoard writer (torch.utils.tensorboard) become series while it runs — the worker
imports the event files from the attempt's folder each pass — and to their end when it ends.
Also the reader itself: both scalar forms, a half-written record, a corrupt one."""

from __future__ import annotations

import struct
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.metrics.tensorboard import CorruptEventFile, records, scalars
from core.settings import Settings
from tests.factories import Tenant, create_run, make_tenant
from tests.support.platforms import StartPlatform, wait_for_run

PY = sys.executable
WRITER = textwrap.dedent("""\
    import pathlib, sys, time
    from torch.utils.tensorboard import SummaryWriter
    go_on = pathlib.Path(sys.argv[1])
    writer = SummaryWriter("logs/tb")
    for step in range(3):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.flush()
    deadline = time.monotonic() + 60
    while not go_on.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for step in range(3, 6):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        writer.add_scalar("lr", 0.1, step, new_style=True)  # a `scalars` tensor, TF2's form
    writer.close()
    """)


def _write_events(folder: Path) -> bytes:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder))
    writer.add_scalar("loss", 0.5, 1)
    writer.add_scalar("eval/acc", 0.75, 2, new_style=True)
    writer.add_text("notes", "not a scalar", 3)
    writer.add_scalar("bad name!", 1.0, 4)
    writer.add_scalar("nan", float("nan"), 5)
    writer.close()
    [events] = folder.glob("events.out.tfevents.*")
    return events.read_bytes()


def _points(data: bytes) -> list[tuple[str, int, float]]:
    return [(p.name, p.step, p.value) for r in records(data).data for p in scalars(r)]


def test_scalars_of_both_forms_are_read_and_the_rest_skipped(tmp_path: Path) -> None:
    data = _write_events(tmp_path)
    assert _points(data) == [("loss", 1, 0.5), ("eval/acc", 2, 0.75)]


def test_a_half_written_record_waits_and_a_corrupt_one_is_refused(tmp_path: Path) -> None:
    data = _write_events(tmp_path)
    whole = records(data)
    cut = records(data[:-5])
    assert cut.consumed < whole.consumed == len(data)
    assert len(cut.data) == len(whole.data) - 1
    assert cut.wanted > 0
    length = struct.unpack("<Q", data[:8])[0]
    flipped = bytearray(data)
    flipped[12 + length - 1] ^= 0xFF  # the first record's last data byte
    with pytest.raises(CorruptEventFile):
        records(bytes(flipped))


@pytest.fixture
def client(
    make_database: Callable[[], str], start_platform: StartPlatform, tmp_path: Path
) -> Iterator[TestClient]:
    url, state = make_database(), tmp_path / "state"
    start_platform(url, state_dir=state)
    app = create_app(Settings(database_url=url, state_dir=state, key_touch_interval_seconds=0))
    with TestClient(app, raise_server_exceptions=False) as made:
        yield made


def _series(client: TestClient, tenant: Tenant, run_id: str, name: str) -> dict[str, Any]:
    found = client.get(
        f"/v1/runs/{run_id}/metrics", params={"name": name}, headers=tenant.headers
    ).json()
    series: dict[str, Any] = (found.get("series") or {}).get(name) or {"steps": []}
    return series


def test_event_files_become_series_while_the_run_runs_and_to_their_end(
    client: TestClient, tmp_path: Path
) -> None:
    tenant = make_tenant(client)
    go_on = tmp_path / "go-on"
    run = create_run(
        client,
        tenant,
        command=[PY, "-c", WRITER, str(go_on)],
        metrics={"tensorboard_dir": "logs"},
    )
    deadline = time.monotonic() + 90
    while _series(client, tenant, run["id"], "train/loss")["steps"] != [0, 1, 2]:
        assert time.monotonic() < deadline, "the live event file was never imported"
        time.sleep(0.1)
    running = client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).json()
    assert running["status"] == "running"  # imported live, not at the end
    go_on.touch()
    done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"}, timeout=90)
    assert done["status"] == "succeeded", done["status_message"]
    loss = _series(client, tenant, run["id"], "train/loss")
    assert loss["steps"] == [0, 1, 2, 3, 4, 5]
    assert loss["values"][5] == pytest.approx(1 / 6)
    assert _series(client, tenant, run["id"], "lr")["steps"] == [3, 4, 5]

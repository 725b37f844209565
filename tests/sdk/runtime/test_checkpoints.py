"""`run.checkpoints`: atomic saves, `latest()` never partial, keep last K, safe loading."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.sdk.runtime.stand_ins import MakeRun, StubAPI
from trainport.runtime import CheckpointCorruptError, Checkpoints, Run, UnsafeCheckpointError
from trainport.runtime.stores import LocalStore


def local_checkpoints(root: Path, keep_last: int = 3) -> Checkpoints:
    return Checkpoints(LocalStore(root), keep_last=keep_last)


def test_a_saved_state_loads_back_equal(tmp_path: Path) -> None:
    checkpoints = local_checkpoints(tmp_path / "ckpt")
    weights = torch.randn(4, 4)
    state = {"model": {"w": weights}, "step": 10, "rng": torch.get_rng_state()}
    saved = checkpoints.save(state, step=10, metrics={"loss": 1.5})
    assert saved is not None
    assert saved.path == "step-0000000010/"
    loaded = checkpoints.load()
    assert torch.equal(loaded["model"]["w"], weights)
    assert loaded["step"] == 10
    marker = json.loads((tmp_path / "ckpt" / "step-0000000010" / "COMMIT").read_text())
    assert marker["step"] == 10
    assert marker["files"][0]["path"] == "state.pt"
    assert set(marker) >= {"step", "files", "time"}


def test_a_checkpoint_without_its_commit_marker_is_ignored(tmp_path: Path) -> None:
    checkpoints = local_checkpoints(tmp_path)
    checkpoints.save({"step": 10}, step=10)
    cut = tmp_path / "step-0000000020"  # an upload cut before COMMIT: files, no marker
    cut.mkdir()
    (cut / "state.pt").write_bytes(b"half a file")
    latest = checkpoints.latest()
    assert latest is not None
    assert latest.step == 10
    assert checkpoints.load()["step"] == 10


def test_a_marker_naming_missing_or_truncated_files_is_ignored(tmp_path: Path) -> None:
    checkpoints = local_checkpoints(tmp_path)
    checkpoints.save({"step": 10}, step=10)
    shutil.copytree(tmp_path / "step-0000000010", tmp_path / "step-0000000020")
    marker = tmp_path / "step-0000000020" / "COMMIT"
    marker.write_text(marker.read_text().replace('"step": 10', '"step": 20'))
    with (tmp_path / "step-0000000020" / "state.pt").open("r+b") as state:
        state.truncate(10)
    (tmp_path / "step-0000000030").mkdir()
    (tmp_path / "step-0000000030" / "COMMIT").write_text("{not json")
    latest = checkpoints.latest()
    assert latest is not None
    assert latest.step == 10


def test_only_the_newest_k_checkpoints_are_kept(tmp_path: Path) -> None:
    checkpoints = local_checkpoints(tmp_path, keep_last=2)
    for step in (10, 20, 30, 40):
        checkpoints.save({"step": step}, step=step)
    assert [c.step for c in checkpoints.list()] == [30, 40]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000000030", "step-0000000040"]


def test_saving_a_step_again_replaces_it(tmp_path: Path) -> None:
    checkpoints = local_checkpoints(tmp_path)
    checkpoints.save({"version": 1}, step=5)
    checkpoints.save({"version": 2}, step=5)
    assert checkpoints.load(5)["version"] == 2
    assert [c.step for c in checkpoints.list()] == [5]


def test_a_save_that_fails_leaves_no_trace(tmp_path: Path) -> None:
    checkpoints = local_checkpoints(tmp_path)
    with pytest.raises((pickle.PicklingError, AttributeError)):
        checkpoints.save({"fn": lambda: None}, step=5)
    assert list(tmp_path.iterdir()) == []
    assert checkpoints.latest() is None


class Payload:
    def __reduce__(self) -> tuple[Callable[..., None], tuple[str]]:
        return (print, ("pwned",))


def test_loading_refuses_anything_but_tensors_and_containers(tmp_path: Path) -> None:
    checkpoints = local_checkpoints(tmp_path)
    saved = checkpoints.save({"ok": 1}, step=1)
    assert saved is not None
    hostile = tmp_path / "step-0000000001" / "state.pt"
    torch.save({"payload": Payload()}, hostile)
    assert checkpoints.latest() is None  # its size no longer matches the COMMIT marker
    with pytest.raises(UnsafeCheckpointError):
        saved.load(verify=False)  # and even unverified, nothing is unpickled


def test_one_flipped_byte_fails_verification(tmp_path: Path) -> None:
    checkpoints = local_checkpoints(tmp_path)
    checkpoints.save({"w": torch.zeros(100)}, step=3)
    state = tmp_path / "step-0000000003" / "state.pt"
    data = bytearray(state.read_bytes())
    data[-100] ^= 0x01
    state.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError):
        checkpoints.load()


def test_files_can_be_saved_as_they_are(tmp_path: Path) -> None:
    source = tmp_path / "export"
    (source / "tokenizer").mkdir(parents=True)
    (source / "weights.bin").write_bytes(b"\x00" * 10)
    (source / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    checkpoints = local_checkpoints(tmp_path / "ckpt")
    saved = checkpoints.save_files(source, step=7)
    assert saved is not None
    assert sorted(f.path for f in saved.files) == ["tokenizer/vocab.txt", "weights.bin"]
    assert (saved.verify() / "tokenizer" / "vocab.txt").read_text() == "a\nb\n"


def test_other_ranks_do_not_write(make_run: MakeRun) -> None:
    run: Run = make_run(None, env={"rank": 1, "world_size": 2})
    assert run.checkpoints.save({"step": 1}, step=1) is None
    assert run.checkpoints.latest() is None


def test_a_save_is_registered_with_the_platform(stub_api: StubAPI, make_run: MakeRun) -> None:
    run: Run = make_run(stub_api.url, send_interval=0.01)
    run.checkpoints.save({"step": 100}, step=100, metrics={"loss": 1.25})
    run.close(timeout=5)
    [record] = stub_api.posted("/checkpoints")
    assert record["step"] == 100
    assert record["path"] == "step-0000000100/"
    assert record["metrics"] == {"loss": 1.25}
    assert record["files"][0]["path"] == "state.pt"
    assert len(record["files"][0]["sha256"]) == 64


def test_loading_reports_the_step_resumed_from(stub_api: StubAPI, make_run: MakeRun) -> None:
    first: Run = make_run(stub_api.url, send_interval=0.01)
    first.checkpoints.save({"step": 40}, step=40)
    first.close(timeout=5)
    second: Run = make_run(stub_api.url, env={"attempt": 2}, send_interval=0.01)
    assert second.checkpoints.load()["step"] == 40
    second.close(timeout=5)
    assert second.resumed_from_step == 40
    assert stub_api.posted("/heartbeat")[-1]["resumed_from_step"] == 40

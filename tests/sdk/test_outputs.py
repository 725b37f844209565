"""A run's outputs from the SDK and the CLI: listed, downloaded, checked (issue 14).

The files are kept as the worker keeps them when an attempt ends (`workers.harvest`), into the
storage the live API serves; a link the run planted is never followed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import trainport
from api.app_state import app_sessionmaker
from core.settings import Settings
from tests.factories import app_of
from tests.support.cli import trainport_cli
from tests.support.servers import ROOT
from workers.executors.base import Leftovers
from workers.harvest import harvest


@pytest.fixture
def kept_run(sdk: trainport.Client, client: TestClient, tmp_path: Path) -> str:
    spec = trainport.RunSpec(command=["python", "train.py"], outputs=["out", "*.txt"])
    run = sdk.runs.create(spec)
    work = tmp_path / "work"
    (work / "out" / "deep").mkdir(parents=True)
    (work / "out" / "model.bin").write_bytes(b"\x00weights" * 100)
    (work / "out" / "deep" / "eval.json").write_text('{"loss": 1.5}')
    (work / "notes.txt").write_text("hello")
    (work / "scratch.tmp").write_text("not an output")
    (work / "out" / "passwd").symlink_to("/etc/passwd")  # a run's attempt at the host
    app = app_of(client)
    settings = Settings(state_dir=ROOT / ".trainport")  # what the live API serves from
    harvest(app_sessionmaker(app), settings, run.id, 1, Leftovers(work, tmp_path / "none"))
    return run.id


def test_outputs_are_listed_and_downloaded_checked_by_sha256(
    sdk: trainport.Client, kept_run: str, tmp_path: Path
) -> None:
    listed = sdk.runs.outputs(kept_run)
    assert [(f.attempt, f.path) for f in listed] == [
        (1, "notes.txt"), (1, "out/deep/eval.json"), (1, "out/model.bin"),
    ]  # fmt: skip
    folder = sdk.runs.download_outputs(kept_run, tmp_path / "got")
    assert (folder / "out" / "model.bin").read_bytes() == b"\x00weights" * 100
    assert not (folder / "out" / "passwd").exists()


@pytest.fixture
def cli_env(cli_env: dict[str, str]) -> dict[str, str]:
    """tests/sdk/conftest.py's CLI environment, 100 columns wide."""
    return {**cli_env, "COLUMNS": "100"}


def test_the_cli_lists_and_downloads_outputs(
    cli_env: dict[str, str],
    kept_run: str,
    tmp_path: Path,
) -> None:
    listed = trainport_cli(cli_env, "outputs", kept_run, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert {f["path"] for f in json.loads(listed.stdout)} == {
        "notes.txt", "out/deep/eval.json", "out/model.bin",
    }  # fmt: skip
    table = trainport_cli(cli_env, "outputs", kept_run)
    assert "out/model.bin" in table.stdout
    saved = trainport_cli(cli_env, "outputs", kept_run, "--download", str(tmp_path / "d"))
    assert saved.returncode == 0, saved.stderr
    assert (tmp_path / "d" / "out" / "deep" / "eval.json").read_text() == '{"loss": 1.5}'

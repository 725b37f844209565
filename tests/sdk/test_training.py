"""The training side end to end over real HTTP: the runtime inside a run reports to the live
API, and the SDK and CLI read back metrics, checkpoints, datasets and provenance.

The run is moved to `starting` the way the scheduler and launcher do it (on the same database),
which mints its run token and launch environment; the runtime then runs in this process with
that environment, exactly as a rank would.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import trainport
from tests.support.cli import trainport_cli
from tests.support.training import launch
from trainport.runtime import Run, RunEnvironment
from trainport.runtime.digests import describe_files, tree_digest


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("the quick brown fox\n" * 50)
    (folder / "sub" / "b.py").write_text("print('hello')\n")
    (folder / ".hidden").write_text("not uploaded")
    return folder


@pytest.fixture
def trained(
    sdk: trainport.Client, client: TestClient, api_url: str, corpus: Path, tmp_path: Path
) -> dict[str, Any]:
    """A run that pinned a pushed dataset, logged 2000 points and saved a checkpoint."""
    with warnings.catch_warnings():  # the CPU wheel's "no NumPy" warning on first import
        warnings.simplefilter("ignore")
        import torch

    version = sdk.datasets.push("corpus", corpus)
    run = sdk.runs.create(command=["python", "train.py"], data={"datasets": ["corpus@1"]})
    env = launch(client, run.id, api_url)
    runtime = Run(RunEnvironment.from_env(env), send_interval=0.05, handle_sigterm=False)
    data = runtime.datasets["corpus"].path
    for step in range(2000):
        runtime.log(step=step, loss=2.0 - step / 2000, lr=1e-3)
    runtime.progress(2000, 4000)
    saved = runtime.checkpoints.save({"w": torch.ones(8)}, step=2000, metrics={"loss": 1.0})
    runtime.close(timeout=20)
    assert runtime.reporter is not None
    assert runtime.reporter.sent_points == 2000
    assert saved is not None
    return {"run": run, "version": version, "data": data, "checkpoint": saved.local_dir()}


def test_push_is_content_addressed(sdk: trainport.Client, corpus: Path) -> None:
    first = sdk.datasets.push("texts", corpus)
    again = sdk.datasets.push("texts", corpus)
    assert first.digest == tree_digest(
        [f for f in describe_files(corpus) if not f.path.startswith(".")]
    )
    assert (again.version, again.digest) == (first.version, first.digest)
    (corpus / "a.txt").write_text("changed")
    changed = sdk.datasets.push("texts", corpus)
    assert changed.version == first.version + 1
    assert changed.digest != first.digest
    assert [d.name for d in sdk.datasets.list()] == ["texts"]
    manifest = sdk.datasets.manifest("texts", first.digest)
    assert sorted(f.path for f in manifest.files) == ["a.txt", "sub/b.py"]


def test_the_sdk_reads_back_what_the_run_reported(
    sdk: trainport.Client, trained: dict[str, Any], corpus: Path
) -> None:
    run = trained["run"]
    assert (trained["data"] / "sub" / "b.py").read_text() == "print('hello')\n"
    series = sdk.runs.metrics(run, name="loss", max_points=100)["loss"]
    assert 2 <= len(series) <= 100
    assert (series.steps[0], series.steps[-1]) == (0, 1999)
    assert set(sdk.runs.metrics(run).series) == {"loss", "lr"}
    progress = sdk.runs.get(run).to_dict()["progress"]
    assert (progress["step"], progress["total_steps"]) == (2000, 4000)
    [checkpoint] = sdk.runs.checkpoints(run)
    assert (checkpoint.step, checkpoint.metrics) == (2000, {"loss": 1.0})
    assert [f.path for f in checkpoint.files] == ["state.pt"]


def test_a_downloaded_checkpoint_matches_and_verifies(
    sdk: trainport.Client, trained: dict[str, Any], tmp_path: Path
) -> None:
    run = trained["run"]
    folder = sdk.runs.download_checkpoint(run, tmp_path / "download")
    original = trained["checkpoint"] / "state.pt"
    assert (folder / "state.pt").read_bytes() == original.read_bytes()
    assert (folder / "COMMIT").read_bytes() == (trained["checkpoint"] / "COMMIT").read_bytes()
    provenance = sdk.runs.provenance(run)
    assert provenance.datasets["corpus"]["digest"] == trained["version"].digest
    assert sdk.provenance.verify(provenance, checkpoint=folder).valid
    tampered = bytearray((folder / "state.pt").read_bytes())
    tampered[-50] ^= 0x01
    (folder / "state.pt").write_bytes(bytes(tampered))
    assert not sdk.provenance.verify(provenance, checkpoint=folder).valid
    forged = provenance.model_copy(update={"record": {**provenance.record, "image": "evil"}})
    assert not sdk.provenance.verify(forged).valid
    [key] = sdk.provenance.keys()
    assert key["key_id"] == provenance.key_id
    assert trainport.verify_offline(provenance, key["public_key"])
    assert not trainport.verify_offline(forged, key["public_key"])


@pytest.fixture
def cli_env(cli_env: dict[str, str]) -> dict[str, str]:
    """tests/sdk/conftest.py's CLI environment, 100 columns wide."""
    return {**cli_env, "COLUMNS": "100"}


def test_the_cli_shows_metrics_checkpoints_and_verified_provenance(
    cli_env: dict[str, str], trained: dict[str, Any]
) -> None:
    run_id = trained["run"].id
    chart = trainport_cli(cli_env, "metrics", run_id)
    assert chart.returncode == 0, chart.stderr
    assert "┤" in chart.stdout
    assert "loss" in chart.stdout
    assert any(0x2800 < ord(c) <= 0x28FF for c in chart.stdout)  # braille dots
    listed = trainport_cli(cli_env, "checkpoints", run_id, "-o", "json")
    assert [c["step"] for c in json.loads(listed.stdout)] == [2000]
    verified = trainport_cli(
        cli_env, "provenance", run_id, "--verify", "--checkpoint-dir", str(trained["checkpoint"])
    )
    assert verified.returncode == 0, verified.stderr
    assert "verified" in verified.stderr
    assert "corpus" in verified.stdout
    here = trainport_cli(cli_env, "provenance", run_id, "--offline", "-o", "json")
    assert here.returncode == 0, here.stderr
    assert "record (here) verified (ed25519" in here.stderr


def test_the_cli_pushes_and_lists_datasets(cli_env: dict[str, str], corpus: Path) -> None:
    pushed = trainport_cli(cli_env, "datasets", "push", str(corpus), "--name", "from-cli")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip() == "from-cli@1"
    listed = trainport_cli(cli_env, "datasets", "ls", "-o", "json")
    [dataset] = json.loads(listed.stdout)
    assert (dataset["name"], dataset["versions"][0]["file_count"]) == ("from-cli", 2)
    shown = trainport_cli(cli_env, "datasets", "ls")
    assert "from-cli" in shown.stdout
    direct = trainport_cli(
        cli_env, "datasets", "push", str(corpus), "--name", "from-cli", "--direct"
    )
    assert direct.returncode != 0  # this server keeps objects on local disk
    assert "need S3 object storage" in direct.stderr

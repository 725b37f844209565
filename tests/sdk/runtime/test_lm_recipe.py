"""The built-in `lm` recipe, run as the platform runs it: a real subprocess per rank.

Tiny models on the CPU with one thread, so runs are fast and bit-for-bit reproducible.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from trainport.recipes.lm.config import LMConfig, ParameterError, from_mapping, load
from trainport.recipes.lm.sample import sample_checkpoint
from trainport.recipes.lm.train import learning_rate
from trainport.runtime import Checkpoints
from trainport.runtime.stores import LocalStore

TINY = {
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 2,
    "context": 64,
    "batch": 8,
    "grad_accum": 2,
    "steps": 60,
    "warmup": 5,
    "eval_every": 20,
    "eval_batches": 1,
    "checkpoint_every": 10,
    "print_every": 1,
    "sample_tokens": 16,
    "threads": 1,
}
STEP_LINE = re.compile(r"^step (\d+)/\d+  loss")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A few hundred KB of real text: the standard library's json and email packages."""
    folder = tmp_path / "text"
    folder.mkdir()
    for package in ("json", "email"):
        for source in sorted((Path(os.__file__).parent / package).glob("*.py")):
            (folder / f"{package}-{source.name}").write_bytes(source.read_bytes())
    return folder


def recipe(checkpoints: Path, corpus: Path, rank: int = 0, **extra: Any) -> subprocess.Popen[str]:
    parameters = {**TINY, "data": str(corpus), **extra.pop("parameters", {})}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env.update(
        TRAINPORT_PARAMETERS=json.dumps(parameters),
        TRAINPORT_CHECKPOINT_DIR=str(checkpoints),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "trainport.recipes.lm"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=checkpoints.parent,
    )


def finish(process: subprocess.Popen[str], timeout: float = 90) -> str:
    out, _ = process.communicate(timeout=timeout)
    return out


def read_until_step(process: subprocess.Popen[str], step: int) -> list[str]:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        match = STEP_LINE.match(line)
        if match and int(match.group(1)) >= step:
            return seen
    raise AssertionError(f"the run ended before step {step}:\n{''.join(seen)}")


def last_step(lines: list[str]) -> int:
    steps = [int(m.group(1)) for m in map(STEP_LINE.match, lines) if m]
    return max(steps, default=0)


def first_group(pattern: str | re.Pattern[str], text: str) -> str:
    """The first group of `pattern`'s first match in `text`, which must have one."""
    found = re.search(pattern, text)
    assert found is not None, text
    return found.group(1)


def final_weights(folder: Path) -> dict[str, torch.Tensor]:
    checkpoints = Checkpoints(LocalStore(folder))
    latest = checkpoints.latest()
    assert latest is not None
    assert latest.step == TINY["steps"]
    state = checkpoints.load(latest)
    return dict(state["model"])


def test_a_run_killed_midway_resumes_to_the_same_weights(tmp_path: Path, corpus: Path) -> None:
    straight = recipe(tmp_path / "straight", corpus)  # runs alongside, in the background
    interrupted = recipe(tmp_path / "interrupted", corpus)
    seen = read_until_step(interrupted, 25)
    interrupted.send_signal(signal.SIGKILL)
    seen += finish(interrupted).splitlines(keepends=True)
    assert interrupted.returncode == -signal.SIGKILL
    killed_at = last_step(seen)
    assert killed_at < TINY["steps"]

    resumed = recipe(tmp_path / "interrupted", corpus)  # the platform's next attempt
    resumed_out = finish(resumed)
    assert resumed.returncode == 0, resumed_out
    straight_out = finish(straight)
    assert straight.returncode == 0, straight_out
    assert "--- sample ---" in straight_out
    resumed_from = int(first_group(r"resumed from step (\d+)", resumed_out))
    assert 0 < killed_at - resumed_from <= TINY["checkpoint_every"]  # lost work

    expected, actual = final_weights(tmp_path / "straight"), final_weights(tmp_path / "interrupted")
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_sigterm_saves_at_the_current_step_and_exits_143(tmp_path: Path, corpus: Path) -> None:
    process = recipe(tmp_path / "ckpt", corpus, parameters={"checkpoint_every": 1000})
    read_until_step(process, 15)
    process.send_signal(signal.SIGTERM)
    out = finish(process)
    assert process.returncode == 143, out
    stopped_at = int(first_group(r"stopping at step (\d+)", out))
    latest = Checkpoints(LocalStore(tmp_path / "ckpt")).latest()
    assert latest is not None
    assert latest.step == stopped_at


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_two_ranks_train_in_step_with_gloo(tmp_path: Path, corpus: Path) -> None:
    port = str(free_port())
    ranks = [
        recipe(
            tmp_path / "ckpt",
            corpus,
            parameters={"steps": 10, "checkpoint_every": 5, "eval_every": 5},
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
        )
        for rank in (0, 1)
    ]
    outputs = [finish(process) for process in ranks]
    assert [p.returncode for p in ranks] == [0, 0], outputs
    checksum = re.compile(r"rank \d weights checksum (\S+ \S+) \(")
    fingerprints = [first_group(checksum, out) for out in outputs]
    assert fingerprints[0] == fingerprints[1]  # DDP kept the replicas identical
    assert "2 x cpu" in outputs[0]
    steps = [c.step for c in Checkpoints(LocalStore(tmp_path / "ckpt")).list()]
    assert steps == [5, 10]


def test_a_checkpoint_samples_the_text_the_run_itself_wrote(tmp_path: Path, corpus: Path) -> None:
    """`trainport sample` / `client.runs.sample` rebuild the model from a checkpoint alone."""
    parameters = {"steps": 20, "sample_prompt": "def ", "sample_tokens": 40}
    process = recipe(tmp_path / "ckpt", corpus, parameters=parameters)
    out = finish(process)
    assert process.returncode == 0, out
    written = out.split("--- sample ---\n", 1)[1].split("\n--- end of sample ---", 1)[0]
    latest = Checkpoints(LocalStore(tmp_path / "ckpt")).latest()
    assert latest is not None
    again = sample_checkpoint(latest.verify(), "def ", tokens=40, temperature=0.8, seed=0)
    assert again == written
    assert again.startswith("def ")
    assert "weights checksum" not in out  # one rank: nothing to compare (issue 15)


def test_parameters_come_from_the_environment_then_flags() -> None:
    env = {"TRAINPORT_PARAMETERS": '{"d_model": 96, "n_heads": 3, "lr": 0.001}'}
    config = load(["--lr", "3e-4", "--steps=7", "--compile", "true"], env)
    assert (config.d_model, config.n_heads, config.lr, config.steps) == (96, 3, 3e-4, 7)
    assert config.compile is True


@pytest.mark.parametrize(
    "values",
    [{"d_modle": 64}, {"steps": "many"}, {"d_model": 100, "n_heads": 3}, {"steps": 0}],
)
def test_bad_parameters_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ParameterError):
        from_mapping(values)


def test_the_schedule_warms_up_then_decays_to_the_floor() -> None:
    config = LMConfig(lr=1.0, warmup=10, steps=110, min_lr_ratio=0.1)
    rates = [learning_rate(config, step) for step in range(110)]
    assert rates[0] == pytest.approx(0.1)
    assert rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(rates[9:]))
    assert rates[-1] == pytest.approx(0.1, abs=1e-3)

"""`make demo` works on a fresh checkout: the embedded platform trains the `lm` recipe on the
standard library's source, shows loss, sample, checkpoints and verified provenance, and stops.

The script runs as `make demo` runs it, in a subprocess, with its state in a temporary folder.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line or environment names `text` (ours: same user)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            seen = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if text.encode() in seen:
            found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    state_dir = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [
            sys.executable,
            "scripts/demo.py",
            "--state-dir",
            str(state_dir),
            "--model",
            "tiny",
            "--steps",
            "40",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    return done, state_dir


def test_the_demo_trains_a_code_model_on_the_stdlib_dataset(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, state_dir = demo
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    pushed = re.search(r"-> python-stdlib@1 +(\d+) files +sha256:[0-9a-f]{64}$", out, re.MULTILINE)
    assert pushed is not None, out
    assert int(pushed.group(1)) > 10
    run_id = re.search(r"-> (run_[0-9a-z]{26}) pending", out)
    assert run_id is not None, out
    assert f"GET /v1/runs/{run_id.group(1)}/logs?attempt=1&follow=true" in out
    assert "recipe: lm" in out
    assert "- python-stdlib@1" in out
    logged = re.findall(r"Z stdout step +(\d+)/40 +loss (\d+\.\d+)", out)
    assert logged, out
    assert logged[-1][0] == "40"
    assert re.search(r"^  status +succeeded$", out, flags=re.MULTILINE), out
    assert "Failed to initialize NumPy" not in out
    assert (state_dir / "trainport.db").exists()
    # The run's log lives in the state folder's database (every API replica reads it there).
    with contextlib.closing(sqlite3.connect(state_dir / "trainport.db")) as db:
        (finished,) = db.execute(
            "SELECT count(*) FROM log_streams WHERE run_id = ? AND finished", (run_id.group(1),)
        ).fetchone()
    assert finished >= 1


def test_the_demo_shows_falling_loss_a_sample_and_checkpoints(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    out = demo[0].stdout
    falling = re.search(r"training loss (\d+\.\d+) -> (\d+\.\d+)", out)
    assert falling is not None, out
    assert float(falling.group(2)) < float(falling.group(1))
    sample = out.split("prompted with `def `\n", 1)[1].split("\n==>", 1)[0]
    assert sample.startswith("  | def"), out
    table = out.split(".checkpoints('", 1)[1].split("\n==>", 1)[0].splitlines()[1:]
    assert table[0].split()[:2] == ["STEP", "ATTEMPT"]
    assert [row.split()[0] for row in table[1:]] == ["40", "30"], out  # keep_checkpoints: 2


def test_the_demo_verifies_the_provenance_of_the_record_and_checkpoint(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    out = demo[0].stdout
    pushed = re.search(r"-> python-stdlib@1 .* (sha256:[0-9a-f]{64})$", out, re.MULTILINE)
    assert pushed is not None
    # The digest pinned at admission is the platform's observation; the spec is the user's word.
    dataset = rf"^  dataset +python-stdlib@1  {pushed.group(1)}  \(observed\)$"
    assert re.search(dataset, out, re.MULTILINE), out
    assert re.search(r"^  spec sha256 +[0-9a-f]{64}  \(reported\)$", out, re.MULTILINE), out
    assert "  record verified: True" in out
    assert "  checkpoint at step 40 verified against it: True" in out
    assert re.search(r"one bit flipped in \S+: valid=False", out), out


def test_the_demo_shows_the_attempt_and_every_event(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    out = demo[0].stdout
    attempts = out.split("  attempts:\n", 1)[1].split("\n==>", 1)[0].splitlines()
    assert attempts[0].split() == ["ATTEMPT", "WHERE", "STARTED", "ENDED", "OUTCOME", "EXIT",
                                   "REASON"]  # fmt: skip
    assert attempts[1].split()[0] == "1"
    assert attempts[1].split()[-3:] == ["succeeded", "0", "completed"]
    events = out.split("/events\n", 1)[1].split("\n==>", 1)[0].splitlines()
    kinds = [row.split()[1] for row in events[1:]]
    moves = [row.split()[2:4] for row in events[1:] if row.split()[1] != "checkpoint"]
    assert moves == [["-", "pending"], ["pending", "queued"], ["queued", "starting"],
                     ["starting", "running"], ["running", "succeeded"]]  # fmt: skip
    # Each checkpoint the run committed is in its history too, while it ran (issue 19).
    rows = [row.split() for row in events[1:]]
    running = next(i for i, row in enumerate(rows) if row[3] == "running")
    succeeded = next(i for i, row in enumerate(rows) if row[3] == "succeeded")
    checkpoints = [i for i, kind in enumerate(kinds) if kind == "checkpoint"]
    assert len(checkpoints) >= 2
    assert all(running < i < succeeded for i in checkpoints)


def test_the_demo_leaves_nothing_running_or_listening(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, state_dir = demo
    assert "==> Stopped the API and the workers" in done.stdout
    url = re.search(r"Starting the API on (http://127\.0\.0\.1:\d+)", done.stdout)
    assert url is not None
    with pytest.raises(httpx.ConnectError):  # nothing listens there any more
        httpx.get(f"{url.group(1)}/healthz", timeout=2)
    assert _processes_mentioning(str(state_dir)) == []

"""`make demo` works on a fresh checkout: the embedded platform trains a real model and stops.

The script runs as `make demo` runs it, in a subprocess, with its state in a temporary folder.
"""

from __future__ import annotations

import re
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
        [sys.executable, "scripts/demo.py", "--state-dir", str(state_dir), "--steps", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    return done, state_dir


def test_the_demo_trains_the_example_to_success(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, state_dir = demo
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    run_id = re.search(r"-> (run_[0-9a-z]{26}) pending", out)
    assert run_id is not None, out
    assert f"GET /v1/runs/{run_id.group(1)}/logs?attempt=1&follow=true" in out
    losses = re.findall(r"Z stdout step +(\d+) +loss (\d+\.\d+)", out)
    assert [step for step, _ in losses] == ["0", "50", "100", "150", "199"], out
    assert float(losses[-1][1]) < float(losses[0][1])
    assert re.search(r"^  status +succeeded$", out, flags=re.MULTILINE), out
    assert "Failed to initialize NumPy" not in out
    assert (state_dir / "trainport.db").exists()
    assert (state_dir / "logs" / run_id.group(1)).is_dir()


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
    moves = [row.split()[2:4] for row in events[1:]]
    assert moves == [["-", "pending"], ["pending", "queued"], ["queued", "starting"],
                     ["starting", "running"], ["running", "succeeded"]]  # fmt: skip


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

"""`make demo` works on a fresh checkout: the script exits 0, lists its run, leaves no server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_submits_a_run_lists_it_and_stops_its_server(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/demo.py", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    run_id = re.search(r"==> GET /v1/runs/(run_[0-9a-z]{26})", out)
    assert run_id is not None, out
    listing = out.split("==> GET /v1/runs\n", 1)[1].split("==>", 1)[0].splitlines()
    assert listing[0].split() == ["ID", "NAME", "STATUS", "CREATED"]
    assert listing[1].split()[:3] == [run_id.group(1), "hello-trainport", "pending"]
    assert "changed_since=1" in out
    assert (tmp_path / "demo.db").exists()
    port = re.search(r"Starting the API on (http://127\.0\.0\.1:\d+)", out)
    assert port is not None
    with pytest.raises(httpx.ConnectError):  # nothing listens there any more
        httpx.get(f"{port.group(1)}/healthz", timeout=2)

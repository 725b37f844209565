"""`trainport server` is quiet by default (issue 15: 4,179 lines in 17 minutes of light use):
warnings and lifecycle lines only; `--log-level info` brings back every request and task.

`bench/server_log_volume.py` measures a longer session (numbers in the report of issue 15).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
QUIET_MAX_LINES = 40  # the lifecycle lines, the sandbox warning and Celery's root warning


def serve_briefly(tmp_path: Path, *flags: str) -> list[str]:
    """Start the embedded platform, send a few requests, let beat tick, stop it; its output."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "sdk"), env.get("PYTHONPATH", "")])
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "trainport", "server", "--port", str(port),
             "--state-dir", str(tmp_path / "state"), *flags],
            cwd=tmp_path,
            env={**env, "TRAINPORT_CONFIG": str(tmp_path / "config.toml")},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            for _ in range(5):
                httpx.get(f"{url}/v1/runs")  # 401s: requests all the same
            time.sleep(3)  # beat sends the reconciler every second
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
    return log.read_text().splitlines()


def test_the_server_logs_warnings_and_lifecycle_lines_by_default(tmp_path: Path) -> None:
    lines = serve_briefly(tmp_path)
    text = "\n".join(lines)
    for lifecycle in ("Trainport on http://", "API ready", "embedded workers starting",
                      "Trainport stopped."):  # fmt: skip
        assert lifecycle in text
    assert "GET /v1/runs" not in text  # no access log
    assert "Sending due task" not in text  # no beat ticks
    assert "Task trainport." not in text  # nor every task
    assert len(lines) <= QUIET_MAX_LINES, text


def test_log_level_info_shows_every_request_and_task(tmp_path: Path) -> None:
    text = "\n".join(serve_briefly(tmp_path, "--log-level", "info"))
    assert '"GET /v1/runs HTTP/1.1" 401' in text
    assert "Sending due task reconcile" in text

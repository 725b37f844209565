"""The servers under test: uvicorn processes started, awaited and stopped by the benchmark.

Both the real API and the bare yardstick run the same way: `python -m uvicorn APP`, one worker
process, uvloop + httptools (uvicorn's defaults when installed), access log off.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UVICORN_FLAGS = ["--workers", "1", "--no-access-log", "--log-level", "warning"]


@dataclass(frozen=True)
class Served:
    port: int
    pid: int
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU the server process (all its threads) has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(port: int, path: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server on port {port} was not ready within {timeout_s:.0f} s")


@contextmanager
def serve(
    app: str, ready_path: str, env: dict[str, str], log: Path, cwd: Path = ROOT
) -> Iterator[Served]:
    """Run `uvicorn app` on a free port until the block ends; `cwd` is the source tree served
    (bench/ab_bench.py serves an earlier checkout beside this one)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command + UVICORN_FLAGS,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            _wait_ready(port, ready_path, process, timeout_s=60)
        except RuntimeError:
            print(log.read_text()[-4000:])
            raise
        yield Served(port, process.pid, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

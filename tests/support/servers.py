"""Real API servers in subprocesses: a free port, waiting until one answers, and the
`start_server` fixture (a pytest plugin, registered for the whole suite by tests/conftest.py).

`start_server` runs `uvicorn api.main:app` exactly as production does, with extra `TRAINPORT_*`
settings; the servers it started are stopped at the end of the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_ready(
    url: str, server: subprocess.Popen[bytes], log: Path, probe: str = "/readyz"
) -> None:
    """Until `probe` answers 200 (`/healthz` for a server that has no usable database)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited early:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}{probe}", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # a bounded poll: the process gives no other readiness signal
    raise RuntimeError(
        f"uvicorn did not become ready in {READY_TIMEOUT_S}s:\n{log.read_text(errors='replace')}"
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s (a server, a browser)."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class LiveServer:
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


StartServer = Callable[..., LiveServer]


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """Start `uvicorn api.main:app` with extra `TRAINPORT_*` settings; stopped at session end."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(database_url: str, **settings: str) -> LiveServer:
        port = free_port()
        server = LiveServer(
            f"http://127.0.0.1:{port}", tmp_path_factory.mktemp("uvicorn") / "server.log"
        )
        env = {
            **os.environ,
            "TRAINPORT_DATABASE_URL": database_url,
            "TRAINPORT_KEY_TOUCH_INTERVAL_SECONDS": "0",
            "TRAINPORT_LOG_LEVEL": "WARNING",
            **{f"TRAINPORT_{name.upper()}": value for name, value in settings.items()},
        }
        command = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1"]
        with server.log.open("wb") as sink:
            process = subprocess.Popen(
                [*command, "--port", str(port), "--log-level", "warning"],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        _wait_until_ready(server.url, process, server.log, probe="/healthz")
        return server

    try:
        yield start
    finally:
        for process in processes:
            stop_process(process)

"""Fixtures for the runtime tests: a recording stand-in for the platform's run routes, an API
address that never answers, and a clean working directory with no TRAINPORT_* variables.

The stand-in and a run's environment are defined in stand_ins.py, which the tests import too.
"""

from __future__ import annotations

import socket
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.sdk.runtime.stand_ins import MakeRun, StubAPI, recording_handler, run_environment
from trainport.runtime import Run

# torch's CPU wheels warn on import that NumPy is missing; nothing here needs NumPy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402, F401 - imported once, under the filter above


@pytest.fixture
def stub_api() -> Iterator[StubAPI]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    stub = StubAPI(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = recording_handler(stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_api() -> Iterator[str]:
    """An address that accepts connections and never answers: the worst API to wait on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in its own directory, outside any run."""
    import os

    for name in list(os.environ):
        if name.startswith("TRAINPORT_") or name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAINPORT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    """`make_run(api_url, **run_options)`: a Run in a platform environment, closed afterwards."""
    made: list[Run] = []

    def make(api_url: str | None, env: dict[str, Any] | None = None, **options: Any) -> Run:
        run = Run(run_environment(tmp_path, api_url, **(env or {})), **options)
        made.append(run)
        return run

    yield make
    for run in made:
        run.close(timeout=0.5)

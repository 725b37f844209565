"""What the runtime tests run against: a recording stand-in for the platform's run routes, and
a run's environment as the platform gives it (what this package's conftest.py serves).

The stand-in is a real HTTP server on 127.0.0.1 (the runtime's own HTTP code is what is under
test); it records each request and answers with the status the test sets per path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol

from trainport.runtime import Run, RunEnvironment


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class StubAPI:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # path suffix -> status
    refused: list[str] = field(default_factory=list)  # paths of the POSTs answered >= 300
    files: dict[str, bytes] = field(default_factory=dict)  # path -> body for GETs
    documents: dict[str, Any] = field(default_factory=dict)  # path -> JSON for GETs

    def posted(self, suffix: str) -> list[Any]:
        return [r.body for r in self.requests if r.method == "POST" and r.path.endswith(suffix)]

    def points(self) -> list[dict[str, Any]]:
        return [p for body in self.posted("/metrics") for p in body["points"]]


def recording_handler(stub: StubAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _status(self) -> int:
            for suffix, status in stub.statuses.items():
                if self.path.split("?")[0].endswith(suffix):
                    return status
            return 0

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            status = self._status() or 202
            if status < 300:
                stub.requests.append(
                    Recorded("POST", self.path, dict(self.headers), json.loads(raw))
                )
            else:
                stub.refused.append(self.path)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            stub.requests.append(Recorded("GET", self.path, dict(self.headers), None))
            path = self.path.split("?")[0]
            if path in stub.files:
                body, kind = stub.files[path], "application/octet-stream"
            elif path in stub.documents:
                body, kind = json.dumps(stub.documents[path]).encode(), "application/json"
            else:
                body, kind = b'{"code": "not_found"}', "application/problem+json"
            self.send_response(200 if path in stub.files or path in stub.documents else 404)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def run_environment(tmp_path: Path, api_url: str | None, **overrides: Any) -> RunEnvironment:
    """A platform run's environment: run id, token, checkpoints under tmp_path."""
    values: dict[str, Any] = {
        "run_id": "run_test",
        "attempt": 1,
        "api_url": api_url,
        "token": "tpr_test",
        "checkpoint_uri": (tmp_path / "checkpoints").as_uri() + "/",
        "cache_dir": tmp_path / "cache",
    }
    values.update(overrides)
    return RunEnvironment(**values)


class MakeRun(Protocol):
    """The `make_run` fixture's type: a Run for `api_url` (None: no platform to report to), its
    environment's fields in `env`, Run's own options as keywords."""

    def __call__(
        self, api_url: str | None, env: dict[str, Any] | None = None, **options: Any
    ) -> Run: ...

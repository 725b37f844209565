"""Firefox driven over WebDriver BiDi, the W3C protocol Firefox speaks itself.

Playwright drives only its own patched Firefox (not downloadable here), and geckodriver is not
packaged by Debian; Firefox ESR serves BiDi on `--remote-debugging-port`, so the few commands
the dashboard's Firefox test needs are sent over one WebSocket with `websockets`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.support.servers import stop_process

FIREFOX = os.environ.get("TRAINPORT_TEST_FIREFOX") or shutil.which("firefox-esr")
LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")


class Firefox:
    """One BiDi session on one tab; commands answer in order, events are kept."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.events: list[dict[str, Any]] = []
        self._next = 0
        self.send("session.new", capabilities={"alwaysMatch": {"acceptInsecureCerts": True}})
        self.send("session.subscribe", events=["log.entryAdded"])
        [tab] = self.send("browsingContext.getTree")["contexts"]
        self.context: str = tab["context"]

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        self.socket.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("type") == "event":
                self.events.append(message)
            elif message.get("id") == self._next:
                if message.get("type") == "error":
                    raise AssertionError(f"{method}: {message['error']}: {message['message']}")
                result: dict[str, Any] = message["result"]
                return result

    def goto(self, url: str) -> None:
        self.send("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def evaluate(self, expression: str) -> Any:
        """The value of `expression` (awaited), as BiDi serialises it."""
        target = {"context": self.context}
        answer = self.send(
            "script.evaluate", expression=expression, target=target, awaitPromise=True
        )
        if answer.get("type") == "exception":
            raise AssertionError(f"{expression}: {answer['exceptionDetails']['text']}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll `expression` until it is truthy (a page has no event the test could wait on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def script_errors(self) -> list[str]:
        return [
            event["params"].get("text", "")
            for event in self.events
            if event.get("method") == "log.entryAdded"
            and event["params"].get("level") == "error"
            and event["params"].get("type") == "javascript"
        ]


@contextmanager
def firefox() -> Iterator[Firefox]:
    """A headless Firefox ESR with a fresh profile, driven over BiDi; closed afterwards."""
    if not FIREFOX:
        raise AssertionError("no firefox-esr: scripts/services.sh installs it")
    with tempfile.TemporaryDirectory(prefix="trainport-firefox-") as profile:
        command = [FIREFOX, "--headless", "--no-remote", "--profile", profile]
        command += ["--remote-debugging-port", "0", "about:blank"]
        log = Path(profile) / "stderr.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            socket = connect(_endpoint(log, process) + "/session", max_size=None)
            with socket:
                yield Firefox(socket)
        finally:
            stop_process(process)


def _endpoint(log: Path, process: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    """The WebSocket address Firefox prints once its remote agent listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded poll: the address is only ever printed
        found = LISTENING.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise AssertionError(f"firefox exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    raise AssertionError("firefox never opened its WebDriver BiDi port")

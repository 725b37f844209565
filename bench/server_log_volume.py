"""How many lines `trainport server` logs for a light session (issue 15).

Starts the embedded platform (`python -m trainport server --bootstrap ...`) in a fresh state
folder, then, as a new user would through the SDK: submits a few tiny runs of
`examples/train_tiny.py`, waits for each, reads its logs, lists and reads runs, asks for a run
that does not exist; then leaves the server idle for `--idle` seconds, stops it with SIGINT and
prints how many lines it wrote (stdout and stderr of the server and all its children), with the
most frequent kinds of line.

    .venv/bin/python -m bench.server_log_volume --runs 3 --idle 60
    .venv/bin/python -m bench.server_log_volume --log-level info     # the chatty level
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not get ready")


def light_session(url: str, config: Path, runs: int) -> None:
    import trainport

    client = trainport.Client(base_url=url, config_file=config, profile="bench")
    for number in range(runs):
        run = client.runs.create(
            name=f"tiny-{number}",
            image="python:3.11-slim",
            command=[sys.executable, str(ROOT / "examples" / "train_tiny.py")],
            env={"STEPS": "60"},
        )
        run = client.runs.wait(run, timeout=300)
        list(client.runs.logs(run))
        list(client.runs.events(run))
        client.runs.get(run)
    list(client.runs.list())
    with contextlib.suppress(trainport.NotFound):
        client.runs.get("run_00000000000000000000000000")
    client.close()


def kind(line: str) -> str:
    """A line with its numbers, ids and times blanked: lines of one kind count together."""
    line = re.sub(r"run_[0-9a-z]+|[0-9a-f-]{8,}", "#", line)
    return re.sub(r"\d+(\.\d+)?", "N", line)[:110]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=60.0, help="idle seconds at the end")
    parser.add_argument("--log-level", default=None, help="passed as --log-level when given")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tp-logvolume-") as scratch:
        folder = Path(scratch)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "TRAINPORT_CONFIG": str(folder / "config.toml")}
        env.pop("TRAINPORT_DATABASE_URL", None)
        argv = [sys.executable, "-m", "trainport", "server", "--port", str(port)]
        argv += ["--state-dir", str(folder / "state"), "--bootstrap", "bench", "--profile", "bench"]
        if args.log_level:
            argv += ["--log-level", args.log_level]
        log = folder / "server.log"
        began = time.monotonic()
        with log.open("wb") as sink:
            server = subprocess.Popen(
                argv, env=env, cwd=folder, stdout=sink, stderr=subprocess.STDOUT
            )
            try:
                wait_ready(url, server)
                light_session(url, folder / "config.toml", args.runs)
                time.sleep(args.idle)
            finally:
                server.send_signal(signal.SIGINT)
                server.wait(timeout=90)
        lines = log.read_text(errors="replace").splitlines()
        seconds = time.monotonic() - began
        print(f"{len(lines)} lines in {seconds:.0f} s ({args.runs} runs, {args.idle:.0f} s idle)")
        for text, count in collections.Counter(map(kind, lines)).most_common(12):
            print(f"{count:6d}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

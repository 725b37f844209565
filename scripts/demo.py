"""`make demo`: the embedded platform runs a real PyTorch training run, seen through the HTTP API.

It starts everything in a fresh state directory (default `./.trainport/demo/`: its own SQLite
database, serverless broker, run logs and attempt folders; never the developer's `.trainport`),
bootstraps an org with an admin key, and starts the embedded platform: the API (uvicorn) and
`python -m workers.embedded` (Celery worker, beat and the outbox relay). Then, as a user would:
submit a run whose command is `examples/train_tiny.py`, follow its logs to the end through
`GET /v1/runs/{id}/logs?follow=true`, and show that it succeeded with its attempts and events.
Everything it started is stopped in `finally`, always. Operator steps run as an operator runs
them (`python -m api.admin ...`), so this script imports nothing of ours and talks to the
platform only over HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "train_tiny.py"
MARKER = ".trainport-demo"  # only a folder with this file (or an empty one) is ever wiped
READY_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
TERMINAL = {"succeeded", "failed", "cancelled"}


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def fresh_state_dir(state_dir: Path) -> None:
    if state_dir.exists() and any(state_dir.iterdir()):
        if not (state_dir / MARKER).exists():
            raise SystemExit(f"{state_dir} is not empty and not a demo folder; pick another")
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / MARKER).touch()


def demo_env(state_dir: Path, base_url: str) -> dict[str, str]:
    """This environment less any TRAINPORT_* setting, plus the demo's own: nothing leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    return env | {
        "TRAINPORT_ENVIRONMENT": "development",
        "TRAINPORT_DATABASE_URL": f"sqlite:///{state_dir / 'trainport.db'}",
        "TRAINPORT_STATE_DIR": str(state_dir),
        "TRAINPORT_PUBLIC_URL": base_url,
        "TRAINPORT_LOG_LEVEL": "WARNING",
        "TRAINPORT_RECONCILE_INTERVAL_SECONDS": "0.5",
    }


def admin(env: dict[str, str], *args: str) -> str:
    """Run `python -m api.admin ARGS` against the demo database; its stdout."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "api.admin", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"`python -m api.admin {' '.join(args)}` failed:\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(argv: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in a session of its own, so its whole group can be stopped together."""
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and modules, fixed arguments
            [sys.executable, *argv], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the leader (a graceful stop), then SIGKILL whatever is left of its group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):  # the group is already empty
        os.killpg(process.pid, signal.SIGKILL)  # its group id is its pid: start_new_session
    process.wait()


def wait_ready(client: httpx.Client, processes: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise SystemExit(f"the {name} exited with {process.returncode}; see its log")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise SystemExit(f"the API was not ready after {READY_TIMEOUT_S:.0f}s")


def checked(response: httpx.Response) -> Any:
    if response.is_error:
        raise SystemExit(f"{response.request.method} {response.request.url} -> "
                         f"{response.status_code}\n{response.text}")  # fmt: skip
    return response.json()


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(header)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def clock(stamp: str | None) -> str | None:
    return stamp[11:23] if stamp else None  # HH:MM:SS.mmm of an RFC 3339 UTC time


def run_spec(steps: int) -> dict[str, Any]:
    return {
        "name": "tiny-sine-mlp",
        "image": "python:3.11-slim",  # ignored by the local executor; used on Kubernetes
        "command": [sys.executable, str(EXAMPLE)],
        "env": {"STEPS": str(steps)},
        "compute": {"nodes": 1, "gpus_per_node": 0, "processes": 1},
        "scheduling": {"max_duration": "10m", "max_retries": 1},
        "labels": {"team": "demo"},
    }


def wait_for(client: httpx.Client, run: dict[str, Any], done: set[str]) -> dict[str, Any]:
    """Long-poll the run until its status is in `done` (no busy loop: the server holds us)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while run["status"] not in done:
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run['id']} still {run['status']} after {RUN_TIMEOUT_S:.0f}s")
        params = {"wait": 10, "resource_version": run["resource_version"]}
        run = checked(client.get(f"/v1/runs/{run['id']}", params=params))
    return run


def follow_logs(client: httpx.Client, run: dict[str, Any]) -> dict[str, Any]:
    """Stream each attempt's log until the run ends; the run as it ended."""
    followed: set[int] = set()
    while True:
        run = wait_for(client, run, {"running", *TERMINAL} | ({"queued"} if followed else set()))
        attempt = run["attempt"]
        if attempt not in followed and run["status"] != "queued":
            followed.add(attempt)
            step(f"GET /v1/runs/{run['id']}/logs?attempt={attempt}&follow=true")
            params = {"attempt": attempt, "follow": "true"}
            url = f"/v1/runs/{run['id']}/logs"
            with client.stream("GET", url, params=params, timeout=RUN_TIMEOUT_S) as response:
                if response.is_error:
                    response.read()
                    checked(response)
                for line in response.iter_lines():
                    print(f"  {line}", flush=True)
        if run["status"] in TERMINAL:
            return run
        run = checked(client.get(f"/v1/runs/{run['id']}"))


def tour(client: httpx.Client, steps: int) -> dict[str, Any]:
    """What a user does: submit a run, follow it, look at how it went; the finished run."""
    spec = run_spec(steps)
    document = yaml.safe_dump(spec, sort_keys=False)
    step("POST /v1/runs (Content-Type: application/yaml)")
    print("  " + document.rstrip().replace("\n", "\n  "))
    headers = {"Content-Type": "application/yaml", "Idempotency-Key": "demo-run-1"}
    run = checked(client.post("/v1/runs", content=document, headers=headers))
    print(f"  -> {run['id']} {run['status']}")
    run = follow_logs(client, run)
    run = wait_for(client, run, TERMINAL)
    step(f"GET /v1/runs/{run['id']}")
    for field in ("id", "name", "status", "status_reason", "attempt"):
        print(f"  {field:<15}{run[field]}")
    print("  attempts:")
    print_table(
        ("ATTEMPT", "WHERE", "STARTED", "ENDED", "OUTCOME", "EXIT", "REASON"),
        [(a["attempt"], a["where"], clock(a["started_at"]), clock(a["ended_at"]), a["outcome"],
          a["exit_code"], a["reason"]) for a in run["attempts"]],
    )  # fmt: skip
    step(f"GET /v1/runs/{run['id']}/events")
    events = checked(client.get(f"/v1/runs/{run['id']}/events", params={"limit": 200}))["data"]
    print_table(
        ("TIME", "KIND", "FROM", "TO", "REASON", "BY"),
        [(clock(e["created_at"]), e["kind"], e["from_status"], e["to_status"], e["reason"],
          e["actor"]) for e in events],
    )  # fmt: skip
    return run


def cancel_unfinished(client: httpx.Client) -> None:
    """On an interrupted demo: cancel its runs first, so no training process outlives it."""
    try:
        for run in checked(client.get("/v1/runs"))["data"]:
            if run["status"] not in TERMINAL:
                wait_for(client, checked(client.post(f"/v1/runs/{run['id']}/cancel")), TERMINAL)
    except (httpx.HTTPError, SystemExit):
        pass  # best effort: the platform is being stopped anyway


def next_steps(state_dir: Path, key: str, run_id: str) -> None:
    step("Try it yourself")
    print(f"""\
  Your own platform, kept in ./.trainport: `make serve` (API, worker, beat and relay on
  http://127.0.0.1:8000; Ctrl-C stops them all), then in another terminal:
    .venv/bin/python -m api.admin bootstrap --org acme    # prints an admin key, once
    .venv/bin/trainport login --api-url http://127.0.0.1:8000 --api-key tp_...
    .venv/bin/trainport run -f run.yaml --follow    # run.yaml: see the README's "Use it from"
  The demo's own data stays in {state_dir} (run {run_id}, key {key[:13]}...);
  `make demo` starts it afresh. Interactive API reference: http://127.0.0.1:8000/docs""")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".trainport" / "demo")
    parser.add_argument("--steps", type=int, default=300, help="training steps of the run")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    fresh_state_dir(state_dir)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = demo_env(state_dir, base_url)

    step(f"Fresh embedded platform in {state_dir}")
    print(" ", admin(env, "migrate").strip())
    step("python -m api.admin bootstrap --org demo --json")
    made = json.loads(admin(env, "bootstrap", "--org", "demo", "--json"))
    print(f"  org {made['org_id']}, project {made['project_id']}, key {made['api_key'][:13]}...")

    step(f"Starting the API on {base_url} and the workers (logs: {state_dir}/*.log)")
    processes: dict[str, subprocess.Popen[bytes]] = {}
    run: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {made['api_key']}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        try:
            processes["API"] = start(
                ["-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port),
                 "--log-level", "warning"], env, state_dir / "api.log",
            )  # fmt: skip
            processes["workers"] = start(
                ["-m", "workers.embedded", "--no-migrate"], env, state_dir / "workers.log"
            )
            wait_ready(client, processes)
            run = tour(client, args.steps)
        finally:
            if not run and processes:
                cancel_unfinished(client)
            for process in reversed(processes.values()):
                stop(process)
    step("Stopped the API and the workers")
    next_steps(state_dir, made["api_key"], run["id"])
    return 0 if run["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())

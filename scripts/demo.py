"""`make demo`: the embedded platform end to end, through the HTTP API a user would call.

Fresh SQLite database under ./.trainport/demo.db (never the developer's trainport.db), migrate,
bootstrap an org with an admin key, start the API with uvicorn on a free local port, submit a run
as YAML, read it back, list runs and the change feed, then stop the server, always.
Operator steps run as the operator would run them (`python -m api.admin ...`), so this script
imports nothing of ours and talks to the platform only over HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 30.0
EXAMPLE_RUN = """\
name: hello-trainport
image: python:3.11-slim
command: ["python", "-c", "print('hello from trainport')"]
env:
  LEARNING_RATE: "3e-4"
compute:
  nodes: 1
  gpus_per_node: 0
  cpus: "2"
  memory: 4Gi
scheduling:
  priority: normal
  max_duration: 1h
labels:
  team: demo
"""


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


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


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
            [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_ready(client: httpx.Client, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the API exited with {server.returncode}; see {log}")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise SystemExit(f"the API was not ready after {READY_TIMEOUT_S:.0f}s; see {log}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()  # SIGTERM: uvicorn finishes its requests and runs the lifespan exit
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def checked(response: httpx.Response) -> Any:
    if response.is_error:
        raise SystemExit(f"{response.request.method} {response.request.url} -> "
                         f"{response.status_code}\n{response.text}")  # fmt: skip
    return response.json()


def print_table(runs: list[dict[str, Any]]) -> None:
    rows = [("ID", "NAME", "STATUS", "CREATED")]
    rows += [(r["id"], r["name"], r["status"], r["created_at"][:19] + "Z") for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def tour(client: httpx.Client) -> str:
    """What a user does: submit a run, look at it, list runs, ask what changed; the run's id."""
    step("POST /v1/runs (Content-Type: application/yaml)")
    print(EXAMPLE_RUN.rstrip())
    run = checked(
        client.post(
            "/v1/runs",
            content=EXAMPLE_RUN,
            headers={"Content-Type": "application/yaml", "Idempotency-Key": "demo-run-1"},
        )
    )
    step(f"GET /v1/runs/{run['id']}")
    shown = checked(client.get(f"/v1/runs/{run['id']}"))
    for field in ("id", "name", "status", "status_reason", "project_id", "resource_version"):
        print(f"  {field:<17}{shown[field]}")
    compute = {k: v for k, v in shown["spec"]["compute"].items() if v is not None}
    print(f"  {'compute':<17}{json.dumps(compute)}")
    step("GET /v1/runs")
    print_table(checked(client.get("/v1/runs"))["data"])
    step("GET /v1/runs?changed_since=0 (the change feed)")
    feed = checked(client.get("/v1/runs", params={"changed_since": 0}))
    print(f"  {len(feed['data'])} run(s) changed; ask next time with "
          f"changed_since={feed['resource_version']}")  # fmt: skip
    return str(run["id"])


def next_steps(database: Path, key: str, run_id: str) -> None:
    step("Try it yourself")
    api = "http://127.0.0.1:8000"
    auth = '-H "Authorization: Bearer $TRAINPORT_KEY"'
    print(f"""\
  Serve the demo database again and call it with the demo's key:
    TRAINPORT_DATABASE_URL=sqlite:///{database} make serve
    export TRAINPORT_KEY={key}
    curl -s {auth} {api}/v1/runs
    curl -s {auth} "{api}/v1/runs/{run_id}?wait=30&resource_version=1"
    curl -s {auth} -H "Content-Type: application/yaml" --data-binary @run.yaml {api}/v1/runs
  Or your own platform: `make serve` (./.trainport/trainport.db), then
    .venv/bin/python -m api.admin bootstrap --org acme    # prints an admin key, once
  Interactive API reference: {api}/docs""")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".trainport")
    state_dir: Path = parser.parse_args(argv).state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    database = state_dir / "demo.db"
    for leftover in (database, *(Path(f"{database}{s}") for s in ("-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    env = {**os.environ, "TRAINPORT_DATABASE_URL": f"sqlite:///{database}",
           "TRAINPORT_ENVIRONMENT": "development"}  # fmt: skip

    step(f"Fresh embedded database {database}")
    print(" ", admin(env, "migrate").strip())
    step("python -m api.admin bootstrap --org demo --json")
    made = json.loads(admin(env, "bootstrap", "--org", "demo", "--json"))
    print(f"  org {made['org_id']}, project {made['project_id']}, key {made['api_key'][:13]}...")

    port, log = free_port(), state_dir / "demo-server.log"
    base_url = f"http://127.0.0.1:{port}"
    step(f"Starting the API on {base_url} (log: {log})")
    server = start_server(env, port, log)
    try:
        headers = {"Authorization": f"Bearer {made['api_key']}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
            wait_ready(client, server, log)
            run_id = tour(client)
    finally:
        stop_server(server)
    step("Stopped the API")
    next_steps(database, made["api_key"], run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make demo`: a code model trained on your own code, on the embedded platform, over its API.

It starts everything in a fresh state directory (default `./.trainport/demo/`: its own SQLite
database, serverless broker, object store, run logs and attempt folders; never the developer's
`.trainport`), bootstraps an org with an admin key, and starts the embedded platform: the API
(uvicorn) and `python -m workers.embedded` (Celery worker, beat and the outbox relay). Then, as a
user would: push a few MB of the Python standard library's source as a dataset, submit a run of
the built-in `lm` recipe (a small byte-level transformer) on it for about two minutes of CPU,
follow its logs through `GET /v1/runs/{id}/logs?follow=true`, and show the falling loss from
the metrics API, the model's sample, its checkpoints, and its provenance record with the
server's signature verified, for the record and for the newest checkpoint (and not once a bit
of it is flipped). Everything it started is stopped in `finally`, always. Operator steps run as
an operator runs them (`python -m api.admin ...`); the tour uses only HTTP and the `trainport`
SDK, as a user's script would.
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
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from trainport import Client
from trainport.training_models import Checkpoint

ROOT = Path(__file__).resolve().parent.parent
MARKER = ".trainport-demo"  # only a folder with this file (or an empty one) is ever wiped
READY_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 900.0
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


# Package folders of the standard library that are not "code a team writes": test suites, GUI
# demos, vendored installers. The rest, in sorted order up to a byte cap, is the dataset.
SKIPPED_PARTS = {"site-packages", "dist-packages", "idlelib", "tkinter", "turtledemo", "lib2to3",
                 "ensurepip", "pydoc_data", "__pycache__"}  # fmt: skip
DATASET = "python-stdlib"


@dataclass(frozen=True)
class Model:
    """The recipe's size and cadence: the real demo, or a small one for the test suite."""

    d_model: int
    n_layers: int
    context: int
    batch: int
    dataset_bytes: int

    def parameters(self, steps: int) -> dict[str, Any]:
        every = max(steps // 4, 1)  # four evaluations and checkpoints per run
        return {
            "d_model": self.d_model, "n_layers": self.n_layers, "n_heads": 4,
            "context": self.context, "batch": self.batch, "steps": steps, "lr": 3e-3,
            "warmup": max(steps // 20, 1), "eval_every": every, "checkpoint_every": every,
            "keep_checkpoints": 2, "sample_tokens": 240, "sample_prompt": "def ",
            "temperature": 0.7,
        }  # fmt: skip


MODELS = {
    # ~0.84M parameters, ~10k tokens/s on two CPU cores: ~0.2 s a step, 600 steps ~2 minutes.
    "demo": Model(d_model=128, n_layers=4, context=128, batch=16, dataset_bytes=4_000_000),
    "tiny": Model(d_model=64, n_layers=2, context=64, batch=8, dataset_bytes=600_000),
}


def stdlib_sources(folder: Path, cap: int) -> tuple[int, int]:
    """Copy the standard library's .py files into `folder` (sorted, at most `cap` bytes)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    count = total = 0
    for source in sorted(root.rglob("*.py")):
        relative = source.relative_to(root)
        if any(p in SKIPPED_PARTS or p.startswith(("test", "config-")) for p in relative.parts):
            continue
        size = source.stat().st_size
        if total + size > cap:
            break
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / relative)
        count, total = count + 1, total + size
    return count, total


def run_spec(dataset: str, model: Model, steps: int) -> dict[str, Any]:
    return {
        "name": "stdlib-code-lm",
        "recipe": "lm",  # python -m trainport.recipes.lm: a byte-level decoder-only transformer
        "parameters": model.parameters(steps),
        "data": {"datasets": [dataset]},
        "compute": {"nodes": 1, "gpus_per_node": 0, "processes": 1},
        "scheduling": {"max_duration": "20m", "max_retries": 1},
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


def follow_logs(client: httpx.Client, run: dict[str, Any], lines: list[str]) -> dict[str, Any]:
    """Stream each attempt's log (kept in `lines`) until the run ends; the run as it ended."""
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
                    lines.append(line)
                    print(f"  {line}", flush=True)
        if run["status"] in TERMINAL:
            return run
        run = checked(client.get(f"/v1/runs/{run['id']}"))


def register_dataset(sdk: Client, folder: Path, model: Model) -> str:
    """The standard library's source as a dataset version; its `name@version` reference."""
    count, total = stdlib_sources(folder, model.dataset_bytes)
    step(f"Dataset: {count} files, {total / 1e6:.1f} MB of the standard library's source")
    print(f"  client.datasets.push({DATASET!r}, {str(folder)!r})")
    version = sdk.datasets.push(DATASET, folder, description="Python's standard library source")
    print(f"  -> {DATASET}@{version.version}  {version.file_count} files  {version.digest}")
    return f"{DATASET}@{version.version}"


def submit(client: httpx.Client, spec: dict[str, Any]) -> dict[str, Any]:
    document = yaml.safe_dump(spec, sort_keys=False)
    step("POST /v1/runs (Content-Type: application/yaml)")
    print("  " + document.rstrip().replace("\n", "\n  "))
    headers = {"Content-Type": "application/yaml", "Idempotency-Key": "demo-run-1"}
    run: dict[str, Any] = checked(client.post("/v1/runs", content=document, headers=headers))
    print(f"  -> {run['id']} {run['status']}")
    return run


def show_run(client: httpx.Client, run: dict[str, Any]) -> None:
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


def show_loss(sdk: Client, run_id: str, buckets: int = 10) -> None:
    """The training loss averaged over `buckets` stretches of steps, beside the held-out loss."""
    step(f"client.runs.metrics({run_id!r}): the loss, falling")
    series = sdk.runs.metrics(run_id, name=["loss", "eval_loss"], max_points=1000).series
    loss, held_out = series.get("loss"), series.get("eval_loss")
    if loss is None or not loss.values:
        raise SystemExit("the run reported no loss")
    points = list(zip(loss.steps, loss.values, strict=True))
    size = -(-len(points) // buckets)  # ceiling division
    evals = list(zip(held_out.steps, held_out.values, strict=True)) if held_out else []
    rows = []
    for start in range(0, len(points), size):
        chunk = points[start : start + size]
        first, last = chunk[0][0], chunk[-1][0]
        mean = sum(v for _, v in chunk) / len(chunk)
        held = [f"{v:.3f} (step {s})" for s, v in evals if first <= s <= last]
        rows.append((f"{first}-{last}", f"{mean:.3f}", ", ".join(held)))
    print_table(("STEPS", "MEAN LOSS", "EVAL LOSS"), rows)
    print(f"  training loss {rows[0][1]} -> {rows[-1][1]} (mean of the first and last stretch)")


def show_sample(lines: Sequence[str]) -> None:
    """The recipe prints a generated sample between two marker lines at the end of the run."""
    text = [line.split(" stdout ", 1)[-1] for line in lines]
    if "--- sample ---" not in text:
        return
    begin = text.index("--- sample ---") + 1
    end = text.index("--- end of sample ---", begin) if "--- end of sample ---" in text else None
    step("What the model writes, prompted with `def `")
    for line in text[begin:end]:
        print(f"  | {line}")


def show_checkpoints(sdk: Client, run_id: str) -> Checkpoint:
    step(f"client.runs.checkpoints({run_id!r})")
    checkpoints = sdk.runs.checkpoints(run_id)
    if not checkpoints:
        raise SystemExit("the run registered no checkpoint")
    print_table(
        ("STEP", "ATTEMPT", "SIZE", "SAVED", "LOSS"),
        [(c.step, c.attempt, f"{c.size_bytes / 1e6:.1f} MB", c.created_at.strftime("%H:%M:%S"),
          c.metrics.get("loss", "")) for c in checkpoints],
    )  # fmt: skip
    return checkpoints[0]


def verify_provenance(sdk: Client, run_id: str, latest: Checkpoint, folder: Path) -> bool:
    """The signed record, the server's verdict on it and on the newest checkpoint, and what
    one changed byte does to that verdict."""
    step(f"client.runs.provenance({run_id!r})")
    provenance = sdk.runs.provenance(run_id)
    record = provenance.record
    # Each fact says who vouches for it: `observed` by the platform, or `reported` by the spec/run.
    for name, pin in (record.get("datasets") or {}).items():
        print(f"  dataset          {name}@{pin['version']}  {pin['digest']}  ({pin.get('source')})")
    spec = record.get("spec") or {}
    print(f"  spec sha256      {spec.get('sha256')}  ({spec.get('source')})")
    print(f"  platform         trainport {record.get('platform_version')}")
    for attempt in record.get("attempts") or []:
        hardware = " ".join(f"{k}={v}" for k, v in (attempt.get("hardware") or {}).items())
        where = f"{attempt['where']}  {hardware}  ({attempt.get('source')})"
        print(f"  attempt {attempt['attempt']}        {where}")
    print(f"  signature        {provenance.algorithm} by {provenance.key_id}")
    record_ok = sdk.provenance.verify(provenance).valid
    print(f"  record verified: {record_ok}")
    sdk.runs.download_checkpoint(run_id, folder, step=latest.step)
    checkpoint_ok = sdk.provenance.verify(provenance, checkpoint=folder).valid
    print(f"  checkpoint at step {latest.step} verified against it: {checkpoint_ok}")
    weights = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    tampered = bytearray(weights.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    weights.write_bytes(bytes(tampered))
    verdict = sdk.provenance.verify(provenance, checkpoint=folder)
    print(f"  one bit flipped in {weights.name}: valid={verdict.valid} ({verdict.reason})")
    return record_ok and checkpoint_ok and not verdict.valid


def tour(
    client: httpx.Client, sdk: Client, state_dir: Path, model: Model, steps: int
) -> tuple[dict[str, Any], bool]:
    """What a user does: data in, a run, its logs, loss, checkpoints and provenance. The
    finished run, and whether it succeeded with its provenance verified."""
    dataset = register_dataset(sdk, state_dir / "dataset", model)
    run = submit(client, run_spec(dataset, model, steps))
    lines: list[str] = []
    run = follow_logs(client, run, lines)
    run = wait_for(client, run, TERMINAL)
    show_run(client, run)
    if run["status"] != "succeeded":
        return run, False
    show_loss(sdk, run["id"])
    show_sample(lines)
    latest = show_checkpoints(sdk, run["id"])
    return run, verify_provenance(sdk, run["id"], latest, state_dir / "checkpoint")


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
    parser.add_argument("--steps", type=int, default=600, help="training steps of the run")
    parser.add_argument(
        "--model", choices=sorted(MODELS), default="demo", help="`tiny`: a quick check"
    )
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
    verified = False
    headers = {"Authorization": f"Bearer {made['api_key']}"}
    sdk = Client(base_url=base_url, api_key=made["api_key"], timeout=60)
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client, sdk:
        try:
            processes["API"] = start(
                ["-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port),
                 "--log-level", "warning"], env, state_dir / "api.log",
            )  # fmt: skip
            processes["workers"] = start(
                ["-m", "workers.embedded", "--no-migrate"], env, state_dir / "workers.log"
            )
            wait_ready(client, processes)
            run, verified = tour(client, sdk, state_dir, MODELS[args.model], args.steps)
        finally:
            if not run and processes:
                cancel_unfinished(client)
            for process in reversed(processes.values()):
                stop(process)
    step("Stopped the API and the workers")
    next_steps(state_dir, made["api_key"], run["id"])
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())

"""`trainport server`: the embedded platform on this machine (SQLite in its state folder).

It runs the server's own commands in the current interpreter as subprocesses: `python -m
api.admin migrate`, then the API (`python -m uvicorn api.main:app`) beside the embedded workers
(`python -m workers.embedded`: Celery worker, beat and outbox relay). The SDK never imports
server code, and needs the `trainport-server` distribution installed beside it. Each child runs
in a process group of its own, so Ctrl-C reaches only this supervisor, which stops both
children gracefully (SIGTERM, then SIGKILL to any group that outstays its grace period).
It is quiet by default: warnings and lifecycle lines; `--log-level info` adds every request
(uvicorn's access log) and every task.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from importlib.metadata import PackageNotFoundError, distribution
from typing import Annotated

import typer
from rich.markup import escape

from trainport.cli.context import ExitCode, err
from trainport.config import ConfigFile
from trainport.errors import ConfigurationError

SERVER_DISTRIBUTION = "trainport-server"
STOP_GRACE_SECONDS = 40.0  # the workers' warm shutdown lets a running task finish
LOG_LEVELS = ("debug", "info", "warning", "error")
CHATTY_LEVELS = ("debug", "info")  # the access log too (the server's rule: core/process_logging)


def register(app: typer.Typer) -> None:
    app.command("server")(server)


def _require_server() -> None:
    try:
        distribution(SERVER_DISTRIBUTION)
    except PackageNotFoundError:
        raise ConfigurationError(
            f"`trainport server` needs the {SERVER_DISTRIBUTION} package in this environment "
            f"({sys.executable}); install it there first."
        ) from None


def _admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, the server's own admin module
        [sys.executable, "-m", "api.admin", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _bootstrap(env: dict[str, str], org: str, url: str, profile: str) -> None:
    """Create the org and its admin key, and save them as a profile so the CLI just works."""
    done = _admin(env, "bootstrap", "--org", org, "--json")
    if done.returncode != 0:
        err.print(f"bootstrap skipped: {escape(done.stderr.strip() or done.stdout.strip())}")
        return
    made = json.loads(done.stdout)
    config = ConfigFile.load()
    config.set_value(profile, "api_url", url)
    config.set_value(profile, "api_key", made["api_key"])
    config.active_profile = profile
    config.save()
    err.print(f"Organisation {org} created; its admin key is saved as profile '{profile}'.")


def server(
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="default: $TRAINPORT_DATABASE_URL, else SQLite"),
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option("--bootstrap", metavar="ORG", help="create ORG and save its admin key"),
    ] = None,
    profile: Annotated[str, typer.Option("--profile", help="profile --bootstrap writes")] = "local",
    state_dir: Annotated[
        str | None,
        typer.Option(
            "--state-dir",
            help="database, broker, logs, attempts; default: $TRAINPORT_STATE_DIR, else .trainport",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            help=f"{', '.join(LOG_LEVELS)}; default: $TRAINPORT_LOG_LEVEL, else warning",
        ),
    ] = None,
    workers: Annotated[
        bool, typer.Option("--workers/--no-workers", help="also run worker, beat and relay")
    ] = True,
) -> None:
    """Start the embedded platform: migrate the database, then the API and the workers."""
    _require_server()
    env = dict(os.environ)
    if database_url:
        env["TRAINPORT_DATABASE_URL"] = database_url
    if state_dir:
        env["TRAINPORT_STATE_DIR"] = state_dir
    level = _log_level(log_level or env.get("TRAINPORT_LOG_LEVEL") or "warning")
    env["TRAINPORT_LOG_LEVEL"] = level.upper()
    env.setdefault("TRAINPORT_PUBLIC_URL", f"http://{host}:{port}")  # where runs call back
    migrated = _admin(env, "migrate")
    if migrated.returncode != 0:
        err.print(f"[red]error:[/] migration failed:\n{escape(migrated.stderr.strip())}")
        raise typer.Exit(ExitCode.API_ERROR)
    if bootstrap:
        _bootstrap(env, bootstrap, f"http://{host}:{port}", profile)
    command = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", host, "--port", str(port)]
    command += ["--log-level", level] + ([] if level in CHATTY_LEVELS else ["--no-access-log"])
    state = env.get("TRAINPORT_STATE_DIR") or ".trainport"
    where = (
        f"state in {state}, database from TRAINPORT_DATABASE_URL"
        if env.get("TRAINPORT_DATABASE_URL")
        else f"database and state in {state}"
    ) + f", log level {level}"
    if not workers:
        err.print(f"Trainport API on http://{host}:{port}, {where} (Ctrl-C stops it)")
        sys.stderr.flush()
        os.execve(sys.executable, command, env)  # noqa: S606 - uvicorn takes over this process
    err.print(f"Trainport on http://{host}:{port}: API, worker, beat and relay; {where}")
    err.print("Ctrl-C stops them all.")
    embedded = [sys.executable, "-m", "workers.embedded", "--no-migrate"]
    code = _supervise([command, embedded], env)
    err.print(
        "Trainport stopped." if code == 0 else f"Trainport stopped: a process exited ({code})."
    )
    if code != 0:
        raise typer.Exit(ExitCode.API_ERROR)


def _log_level(value: str) -> str:
    level = value.strip().lower()
    if level not in LOG_LEVELS:
        raise typer.BadParameter(
            f"{value!r}: use one of {', '.join(LOG_LEVELS)}", param_hint="--log-level"
        )
    return level


def _supervise(commands: list[list[str]], env: dict[str, str]) -> int:
    """Run the commands side by side until one ends or a signal arrives; then stop them all.

    Returns 0 after a requested stop, else the exit code of the child that ended first.
    """
    stop, requested = threading.Event(), threading.Event()

    def on_signal(*_: object) -> None:
        requested.set()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    children = [
        subprocess.Popen(argv, env=env, process_group=0)  # noqa: S603 - the server's own modules
        for argv in commands
    ]
    for child in children:
        threading.Thread(target=_wait_then_set, args=(child, stop), daemon=True).start()
    stop.wait()
    if requested.is_set():
        err.print("Stopping the API and the workers...")
    first_code = next((c.returncode for c in children if c.poll() is not None), 0)
    _stop_all(children)
    return 0 if requested.is_set() else (first_code or 1)


def _wait_then_set(child: subprocess.Popen[bytes], stop: threading.Event) -> None:
    child.wait()
    stop.set()


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)  # uvicorn and the workers both stop gracefully
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=STOP_GRACE_SECONDS)
        with contextlib.suppress(ProcessLookupError):  # the group is empty: all stopped
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()

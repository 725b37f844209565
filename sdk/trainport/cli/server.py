"""`trainport server`: the embedded platform on this machine (SQLite under ./.trainport).

It runs the server's own commands in the current interpreter, `python -m api.admin migrate`
then `python -m uvicorn api.main:app`, as subprocesses: the SDK never imports server code, and
needs the `trainport-server` distribution installed beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from typing import Annotated

import typer
from rich.markup import escape

from trainport.cli.context import ExitCode, err
from trainport.config import ConfigFile
from trainport.errors import ConfigurationError

SERVER_DISTRIBUTION = "trainport-server"


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
) -> None:
    """Start the embedded platform: migrate the database, then serve the API."""
    _require_server()
    env = dict(os.environ)
    if database_url:
        env["TRAINPORT_DATABASE_URL"] = database_url
    migrated = _admin(env, "migrate")
    if migrated.returncode != 0:
        err.print(f"[red]error:[/] migration failed:\n{escape(migrated.stderr.strip())}")
        raise typer.Exit(ExitCode.API_ERROR)
    if bootstrap:
        _bootstrap(env, bootstrap, f"http://{host}:{port}", profile)
    err.print(f"Trainport API on http://{host}:{port} (Ctrl-C stops it)")
    sys.stderr.flush()
    command = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", host, "--port", str(port)]
    os.execve(sys.executable, command, env)  # noqa: S606 - uvicorn takes over this process

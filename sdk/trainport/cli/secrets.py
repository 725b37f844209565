"""`trainport secrets set NAME`, `secrets ls` and `secrets rm NAME`: values runs name, write-only.

`set` reads the value from stdin when it is piped (`vault read ... | trainport secrets set
wandb`), else prompts for it hidden. Never from an argument: it would sit in the shell history
and in every process listing.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trainport.cli.context import err, out, state
from trainport.cli.output import Format, age, print_json, print_yaml
from trainport.models import Secret

secrets_app = typer.Typer(help="Store your organisation's secrets for runs.", no_args_is_help=True)
NameArgument = Annotated[str, typer.Argument(help="the name runs use: {secret: NAME}")]
ProjectOption = Annotated[
    str | None,
    typer.Option("--project", "-p", help="one project's value (default: the whole org's)"),
]
OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table for people; json or yaml for scripts")
]


def register(app: typer.Typer) -> None:
    app.add_typer(secrets_app, name="secrets")


@secrets_app.command("set")
def set_secret(name: NameArgument, project: ProjectOption = None) -> None:
    """Store or rotate a value, read from stdin or a hidden prompt (admin keys only)."""
    value = _read_value()
    if not value:
        raise typer.BadParameter("the value is empty", param_hint="stdin")
    secret = state.client().secrets.set(name, value, project=project)
    scope = f"project {secret.project_id}" if secret.project_id else "the whole org"
    err.print(f"secret [bold]{escape(secret.name)}[/] v{secret.version} set for {scope}")


def _read_value() -> str:
    if not sys.stdin.isatty():
        # One trailing newline is the pipe's (`echo`), not the value's.
        return sys.stdin.read().removesuffix("\n").removesuffix("\r")
    value: str = typer.prompt("Value", hide_input=True, err=True)
    return value


@secrets_app.command("ls")
def list_secrets(project: ProjectOption = None, output: OutputOption = Format.TABLE) -> None:
    """Names, scopes and versions of your organisation's secrets; never a value."""
    found = state.client().secrets.list(project=project)
    if output is Format.JSON:
        print_json([s.to_dict() for s in found])
    elif output is Format.YAML:
        print_yaml([s.to_dict() for s in found])
    else:
        out.print(secrets_table(found))


def secrets_table(found: list[Secret]) -> Table:
    table = Table("NAME", "SCOPE", "VERSION", "UPDATED", box=None)
    for secret in found:
        table.add_row(
            secret.name, secret.project_id or "org", str(secret.version), age(secret.updated_at)
        )
    return table


@secrets_app.command("rm")
def remove_secret(name: NameArgument, project: ProjectOption = None) -> None:
    """Delete a value (admin keys only); runs naming it then fail to launch."""
    state.client().secrets.delete(name, project=project)
    err.print(f"secret [bold]{escape(name)}[/] deleted")

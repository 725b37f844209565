"""`trainport outputs RUN`: the files a run's `outputs` globs matched, and downloading them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trainport.cli.context import err, out, state
from trainport.cli.output import Format, age
from trainport.cli.training import OutputOption, RunArg, _dump, size
from trainport.training_models import OutputFile


def register(app: typer.Typer) -> None:
    app.command("outputs")(outputs)


def outputs(
    run: RunArg,
    download: Annotated[
        Path | None, typer.Option("--download", help="save the outputs into this folder")
    ] = None,
    attempt: Annotated[
        int | None,
        typer.Option("--attempt", min=1, help="one attempt's (default: all; --download: latest)"),
    ] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """A run's outputs, by attempt; --download fetches them (checked against their sha256)."""
    client = state.client()
    if download is not None:
        folder = client.runs.download_outputs(run, download, attempt=attempt)
        err.print(f"Saved to {escape(str(folder))}")
        return
    found = client.runs.outputs(run, attempt=attempt)
    if _dump([f.to_dict() for f in found], output):
        return
    if not found:
        err.print(f"{run} has no outputs: its spec lists none, or no attempt has ended yet.")
        return
    out.print(outputs_table(found))


def outputs_table(found: list[OutputFile]) -> Table:
    table = Table("ATTEMPT", "PATH", "SIZE", "AGE", "SHA256", box=None)
    for entry in found:
        when = age(entry.created_at) if entry.created_at else "-"
        table.add_row(
            str(entry.attempt), escape(entry.path), size(entry.size), when, entry.sha256[:12]
        )
    return table

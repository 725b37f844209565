"""`trainport datasets push DIR --name NAME [--direct]`, `datasets ls` and `datasets get NAME`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from trainport.cli.context import err, out, state
from trainport.cli.output import Format, age, print_json, print_yaml
from trainport.cli.training import size
from trainport.resources.datasets import upload_size
from trainport.training_models import Dataset, DatasetVersion

datasets_app = typer.Typer(help="Upload and list datasets.", no_args_is_help=True)
OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table for people; json or yaml for scripts")
]


def register(app: typer.Typer) -> None:
    app.add_typer(datasets_app, name="datasets")


@datasets_app.command("push")
def push(
    directory: Annotated[
        Path, typer.Argument(help="the folder to upload", exists=True, file_okay=False)
    ],
    name: Annotated[str, typer.Option("--name", help="the dataset (created if need be)")],
    description: Annotated[str, typer.Option("--description", help="for a new dataset")] = "",
    direct: Annotated[
        bool,
        typer.Option(
            "--direct", help="PUT the files straight to the server's S3 storage (presigned URLs)"
        ),
    ] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Upload a folder as a new version of a dataset; the same content gives the same version."""
    client = state.client()
    send = client.datasets.push_direct if direct else client.datasets.push
    total = upload_size(directory)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"{name} ←", total=total)
        version = send(
            name,
            directory,
            description=description,
            progress=lambda sent: progress.advance(task, sent),
        )
        progress.update(task, description=f"{name}: hashing on the server")
    if output is Format.JSON:
        print_json(version.to_dict())
    elif output is Format.YAML:
        print_yaml(version.to_dict())
    else:
        err.print(
            f"[bold]{escape(version.ref)}[/]  {version.digest}  {version.file_count} files, "
            f"{size(version.size_bytes)}"
        )
        print(version.ref, flush=True)


@datasets_app.command("ls")
def list_datasets(output: OutputOption = Format.TABLE) -> None:
    """Every dataset of your organisation, with its newest version."""
    found = state.client().datasets.list()
    if output is Format.JSON:
        print_json([d.to_dict() for d in found])
    elif output is Format.YAML:
        print_yaml([d.to_dict() for d in found])
    else:
        out.print(datasets_table(found))


def datasets_table(found: list[Dataset]) -> Table:
    table = Table("NAME", "VERSIONS", "LATEST", "DIGEST", "FILES", "SIZE", "AGE", box=None)
    for dataset in found:
        latest = dataset.latest
        table.add_row(
            dataset.name,
            str(len(dataset.versions)),
            str(latest.version) if latest else "-",
            latest.digest[:19] + "…" if latest else "-",
            str(latest.file_count) if latest else "-",
            size(latest.size_bytes) if latest else "-",
            age(dataset.created_at),
        )
    return table


@datasets_app.command("get")
def get_dataset(
    name: Annotated[str, typer.Argument(help="a dataset name")],
    output: OutputOption = Format.TABLE,
) -> None:
    """One dataset and all its versions."""
    dataset = state.client().datasets.get(name)
    if output is Format.JSON:
        print_json(dataset.to_dict())
    elif output is Format.YAML:
        print_yaml(dataset.to_dict())
    else:
        out.print(versions_table(dataset.versions))


def versions_table(versions: list[DatasetVersion]) -> Table:
    table = Table("VERSION", "DIGEST", "FILES", "SIZE", "SOURCE", "AGE", box=None)
    for version in sorted(versions, key=lambda v: v.version, reverse=True):
        table.add_row(
            version.ref,
            version.digest,
            str(version.file_count),
            size(version.size_bytes),
            escape(version.source or "upload"),
            age(version.created_at),
        )
    return table

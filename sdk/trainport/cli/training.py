"""`trainport metrics RUN`, `trainport checkpoints RUN`, `trainport provenance RUN` and
`trainport sample RUN`: what a run produced, from a terminal.

`provenance RUN --verify` exits 0 when the server confirms the record (and, with
`--checkpoint-dir`, that the checkpoint's files are the ones registered for it), 1 when it does
not. `--offline` checks the record's Ed25519 signature here instead, with the public key the
server publishes (the `cryptography` package: `pip install 'trainport[verify]'`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from trainport.cli.chart import render_chart
from trainport.cli.context import ExitCode, err, out, state
from trainport.cli.output import Format, age, print_json, print_yaml
from trainport.resources.provenance import verify_offline
from trainport.training_models import Checkpoint, Metrics, Provenance

RunArg = Annotated[
    str,
    typer.Argument(help="a run id (run_...), or a name only one of your runs has", metavar="RUN"),
]
OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table for people; json or yaml for scripts")
]
DEFAULT_CHART = ("loss", "eval_loss")


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)
    app.command("checkpoints")(checkpoints)
    app.command("provenance")(provenance)
    app.command("sample")(sample)


def _dump(document: Any, fmt: Format) -> bool:
    """Print for scripts; False when the format is a table (the caller draws it)."""
    if fmt is Format.JSON:
        print_json(document)
    elif fmt is Format.YAML:
        print_yaml(document)
    return fmt is not Format.TABLE


def metrics(
    run: RunArg,
    name: Annotated[
        list[str] | None, typer.Option("--name", "-n", help="series to show (repeatable)")
    ] = None,
    max_points: Annotated[
        int, typer.Option("--max-points", min=2, max=10_000, help="points per series")
    ] = 500,
    height: Annotated[int, typer.Option("--height", min=4, max=100)] = 16,
    output: OutputOption = Format.TABLE,
) -> None:
    """A run's metrics: a chart of the loss in the terminal and the last values."""
    found = state.client().runs.metrics(run, name=name, max_points=max_points)
    if _dump(found.to_dict(), output):
        return
    if not found.series:
        err.print(f"{run} has no metrics yet.")
        return
    charted = name or [n for n in DEFAULT_CHART if n in found] or sorted(found.series)[:1]
    width = min(out.width, 120) - 2
    series = {n: (found[n].steps, found[n].values) for n in charted if n in found}
    for line in render_chart(series, width=width, height=height):
        out.print(line)
    out.print(metrics_table(found))


def metrics_table(found: Metrics) -> Table:
    table = Table("METRIC", "POINTS", "LAST STEP", "LAST", "MIN", "MAX", box=None)
    for metric, series in sorted(found.series.items()):
        if not series.values:
            continue
        table.add_row(
            metric,
            str(len(series)),
            str(series.steps[-1]),
            f"{series.values[-1]:.6g}",
            f"{min(series.values):.6g}",
            f"{max(series.values):.6g}",
        )
    return table


def size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if amount < 1000 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{value} B"


def checkpoints(
    run: RunArg,
    download: Annotated[
        Path | None, typer.Option("--download", help="save a checkpoint's files into this folder")
    ] = None,
    step: Annotated[
        int | None, typer.Option("--step", min=0, help="which one to download (default newest)")
    ] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """A run's checkpoints, newest first; --download fetches one."""
    client = state.client()
    if download is not None:
        folder = client.runs.download_checkpoint(run, download, step=step)
        err.print(f"Saved to {escape(str(folder))}")
        return
    found = client.runs.checkpoints(run)
    if _dump([c.to_dict() for c in found], output):
        return
    if not found:
        err.print(f"{run} has no checkpoints yet.")
        return
    out.print(checkpoints_table(found))


def sample(
    run: RunArg,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="the text to continue")] = "",
    checkpoint: Annotated[
        int | None, typer.Option("--checkpoint", min=0, help="the step (default: the newest)")
    ] = None,
    tokens: Annotated[int, typer.Option("--tokens", "-n", min=1, max=100_000)] = 200,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0)] = 0.8,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Text from an `lm` recipe run's model: its checkpoint, run here on the CPU (needs torch)."""
    client = state.client()
    with err.status("Fetching the checkpoint and sampling..."):
        text = client.runs.sample(
            run, prompt, step=checkpoint, tokens=tokens, temperature=temperature, seed=seed
        )
    print(text, flush=True)


def checkpoints_table(found: list[Checkpoint]) -> Table:
    table = Table("STEP", "ATTEMPT", "SIZE", "FILES", "AGE", "METRICS", "SHA256", box=None)
    for checkpoint in found:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in checkpoint.metrics.items() if _number(v))
        table.add_row(
            str(checkpoint.step),
            str(checkpoint.attempt or "-"),
            size(checkpoint.size_bytes),
            str(len(checkpoint.files)),
            age(checkpoint.created_at),
            shown or "-",
            checkpoint.sha256[:12],
        )
    return table


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def provenance(
    run: RunArg,
    verify: Annotated[
        bool, typer.Option("--verify", help="ask the server to check the signature")
    ] = False,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option("--checkpoint-dir", help="also check a checkpoint folder (with COMMIT)"),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option("--offline", help="check the signature here, with the server's public key"),
    ] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """A run's signed provenance record: datasets, image, spec hash, code, attempts."""
    client = state.client()
    record = client.runs.provenance(run)
    if not _dump(record.to_dict(), output):
        show_provenance(record)
    if offline:
        _verdict("record (here)", record, _verify_here(client.provenance.keys(), record))
    if not (verify or checkpoint_dir):
        return
    verdict = client.provenance.verify(record, checkpoint=checkpoint_dir)
    subject = "record and checkpoint" if checkpoint_dir else "record"
    _verdict(subject, record, None if verdict.valid else verdict.reason or "no reason given")


def _verify_here(keys: list[dict[str, str]], record: Provenance) -> str | None:
    """Why the record's signature fails with the published key (None when it holds)."""
    published = {key["key_id"]: key["public_key"] for key in keys}
    if record.key_id not in published:
        return f"key {record.key_id} is not one this server publishes"
    if not verify_offline(record, published[record.key_id]):
        return "the signature does not match the record"
    return None


def _verdict(subject: str, record: Provenance, failure: str | None) -> None:
    if failure is None:
        err.print(f"[green]✓[/] {subject} verified ({record.algorithm}, key {record.key_id})")
        return
    err.print(f"[red]✗[/] {subject} NOT verified: {escape(failure)}")
    raise typer.Exit(ExitCode.RUN_FAILED)


def show_provenance(found: Provenance) -> None:
    out.print(Panel(provenance_facts(found), title="[bold]Provenance[/]", title_align="left"))
    if found.datasets:
        out.print(pinned_datasets_table(found))
    if found.attempts:
        out.print(attempts_table(found))


def provenance_facts(found: Provenance) -> Table:
    record = found.record
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    code = record.get("code") or {}
    for label, value in (
        ("Run", record.get("run_id")),
        ("Image", record.get("image")),
        ("Recipe", record.get("recipe")),
        ("Spec sha256", record.get("spec_sha256")),
        ("Code (shipped)", shipped_code(code)),
        ("Code (reported)", reported_code(code)),
        ("Platform", record.get("platform_version")),
        ("Frozen at", record.get("frozen_at")),
        ("Signature", f"{found.algorithm} by key {found.key_id}: {found.signature[:16]}…"),
    ):
        facts.add_row(label, escape(str(value or "-")))
    return facts


def shipped_code(code: dict[str, Any]) -> str | None:
    """The snapshot the platform shipped (observed): its digest, and the commit it fetched."""
    shipped = code.get("shipped") or {}
    if not shipped.get("digest"):
        return None
    git = shipped.get("git") or {}
    where = f"  git {git.get('url')} @ {git.get('commit')}" if git else "  (uploaded workdir)"
    return f"{shipped['digest']}{where}  [observed]"


def reported_code(code: dict[str, Any]) -> str | None:
    """The spec's `code` claim (the submitter's word)."""
    named = " @ ".join(str(v) for v in (code.get("repo"), code.get("commit")) if v)
    if not named:
        return None
    state = code.get("dirty")
    dirty = "" if state is None else (", dirty" if state else ", clean")
    return f"{named}  [reported{dirty}]"


def pinned_datasets_table(found: Provenance) -> Table:
    table = Table("DATASET", "VERSION", "DIGEST", title="Datasets", box=None)
    for name, pinned in sorted(found.datasets.items()):
        pinned = pinned if isinstance(pinned, dict) else {}
        table.add_row(name, str(pinned.get("version", "-")), str(pinned.get("digest", "-")))
    return table


def attempts_table(found: Provenance) -> Table:
    table = Table("ATTEMPT", "CLUSTER", "HARDWARE", "RESUMED FROM", title="Attempts", box=None)
    for attempt in found.attempts:
        hardware = attempt.get("hardware") or {}
        items = hardware.items() if isinstance(hardware, dict) else []
        shown = ", ".join(f"{k}={v}" for k, v in items)
        resumed = attempt.get("resumed_from_step")
        table.add_row(
            str(attempt.get("attempt", "-")),
            str(attempt.get("cluster") or "-"),
            escape(shown[: shutil.get_terminal_size().columns // 2] or "-"),
            "-" if resumed is None else str(resumed),
        )
    return table

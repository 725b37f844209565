"""`trainport run`, `runs ls|get|describe|rm`, `cancel` and `logs`: runs from a terminal."""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from trainport.cli.context import ExitCode, err, out, state
from trainport.cli.output import (
    Format,
    describe,
    print_change,
    print_run,
    print_runs,
    watch_header,
)
from trainport.client import Client
from trainport.errors import NotFound
from trainport.models import Run, RunStatus
from trainport.spec import RunSpec

runs_app = typer.Typer(help="List, inspect and delete runs.", no_args_is_help=True)
OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table for people; json or yaml for scripts")
]
LONG_POLL_SECONDS = 60
LOG_RETRY_SECONDS = 2  # a running attempt whose log file is not there yet
RunArg = Annotated[
    str,
    typer.Argument(help="a run id (run_...), or a name only one of your runs has", metavar="RUN"),
]
TEXT_PATHS = ("env.", "labels.")  # `--set` values kept as typed: these maps hold strings


def register(app: typer.Typer) -> None:
    app.command("run")(submit)
    app.command("cancel")(cancel)
    app.command("logs")(logs)
    app.add_typer(runs_app, name="runs")


def parse_value(raw: str) -> Any:
    """`--set` values: JSON first (so `3e-4` is a number), then YAML, else the text itself."""
    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    overrides = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        # Env values and labels are text: `--set env.LR=1e-3` stays "1e-3", not 0.001.
        text_only = key.startswith(TEXT_PATHS) and not raw.lstrip().startswith("{")
        overrides[key] = raw if text_only else parse_value(raw)
    return overrides


@contextmanager
def upload_progress(workdir: str | None) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for the workdir upload (nothing shows when nothing is sent)."""
    if workdir is None or workdir.startswith("sha256:"):
        yield None
        return
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(TextColumn("[bold]workdir →"), *columns, console=err, transient=True) as bar:
        task = bar.add_task("workdir", total=None)
        yield lambda sent: bar.advance(task, sent)


def load_spec(file: str) -> RunSpec:
    if file == "-":
        return RunSpec.from_yaml_string(sys.stdin.read(), source="stdin")
    return RunSpec.from_yaml(file)


def submit(
    file: Annotated[
        str | None,
        typer.Option("--file", "-f", help="the run spec, YAML or JSON ('-' for stdin)"),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="stream logs until the run ends; exit 0 or 1")
    ] = False,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="override a field by dotted path"),
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="project name or id")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="the run's name")] = None,
    plan: Annotated[
        bool,
        typer.Option("--plan", help="show what would run, where, and its cost; submit nothing"),
    ] = False,
    manifests: Annotated[
        bool,
        typer.Option(
            "--manifests",
            help="with --plan: print only the Kubernetes objects it would apply, as YAML "
            "documents (-o json: a JSON list)",
        ),
    ] = False,
    clone: Annotated[
        str | None,
        typer.Option("--clone", metavar="RUN", help="submit a copy of RUN's spec (with --set)"),
    ] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Submit a run from a spec file (or --clone an earlier run); --plan shows what would run
    and submits nothing; with --follow, stream its logs and exit with how it ended."""
    if (file is None) == (clone is None):
        raise typer.BadParameter("give either --file or --clone", param_hint="--file")
    if clone is not None and plan:
        raise typer.BadParameter("--plan goes with --file", param_hint="--plan")
    if manifests and not plan:
        raise typer.BadParameter("--manifests goes with --plan", param_hint="--manifests")
    extra = parse_overrides(overrides or [])
    client = state.client()
    if clone is not None:
        run = client.runs.clone(clone, extra, name=name, project=project)
    else:
        if name is not None:
            extra["name"] = name
        file = file or "-"
        spec = load_spec(file).with_overrides(extra)
        if spec.workdir is not None and file != "-" and not spec.workdir.startswith("sha256:"):
            # A relative workdir is the spec file's neighbour, wherever the CLI runs from.
            spec = spec.model_copy(update={"workdir": str(Path(file).parent / spec.workdir)})
        where = project or spec.project or client.config.project
        if plan:
            planned = client.runs.plan(spec, project=where).to_dict()
            if manifests:
                print_manifests(planned, output)
            else:
                print_plan(planned, output)
            return
        with upload_progress(spec.workdir) as progress:
            run = client.runs.create(spec, project=where, progress=progress)
    if output is Format.TABLE:
        err.print(f"Submitted [bold]{run.id}[/] ({run.name}): {run.status}")
        print(run.id, flush=True)
    else:
        print_run(run, output)
    if follow:
        finished = follow_run(client, run)
        err.print(f"{finished.id} {finished.status}" + _reason(finished))
        raise typer.Exit(
            ExitCode.OK if finished.status == RunStatus.SUCCEEDED else ExitCode.RUN_FAILED
        )


def print_plan(plan: dict[str, Any], output: Format) -> None:
    """A plan for people (where, why, what it costs) or, with -o json|yaml, the whole answer."""
    if output is Format.JSON:
        print(json.dumps(plan, indent=2))
        return
    if output is Format.YAML:
        print(yaml.safe_dump(plan, sort_keys=False), end="")
        return
    place, cost = plan["placement"], plan["estimate"]
    where = (
        f"{place['gpus']} x {place['gpu_type']} on {place['cluster']}"
        if place["gpus"]
        else place["cluster"]
    )
    out.print(f"Would run: {where}" if place["fits"] else f"Would wait: {place['reason']}")
    out.print(f"  {place['detail']}")
    if place.get("position") is not None:
        out.print(f"  queue position {place['position']}")
    if cost.get("gpu_hours") is not None:
        hours = cost["gpu_hours"]
        out.print(f"  max_duration: {hours} GPU-hours, {cost['cost']} {cost['currency']}")
    for warning in plan.get("warnings") or []:
        out.print(f"  warning: {warning}")
    for document in plan.get("manifests") or []:
        meta = document["metadata"]
        out.print(f"  would apply: {document['kind']} {meta['name']} in {meta['namespace']}")
    out.print("Nothing was submitted; -o yaml shows the resolved spec, --manifests the objects.")


def print_manifests(plan: dict[str, Any], output: Format) -> None:
    """The objects a Kubernetes cluster would get, ready for `kubectl apply --dry-run=server`
    (with the plan's placeholders for what only the launch knows)."""
    documents = plan.get("manifests")
    if documents is None:
        why = "; ".join(plan.get("warnings") or []) or "it would run as local processes"
        err.print(f"No Kubernetes manifests: {why}")
        return
    if output is Format.JSON:
        print(json.dumps(documents, indent=2))
        return
    print(yaml.safe_dump_all(documents, sort_keys=False), end="")


def _reason(run: Run) -> str:
    detail = run.status_message or run.status_reason
    return f": {detail}" if detail else ""


def follow_run(client: Client, run: Run) -> Run:
    """Stream each attempt's logs while it runs (a retried run has several); return the run
    once it has finished."""
    followed: int | None = None
    try:
        while not run.is_terminal:
            unseen = run.status == RunStatus.RUNNING and run.attempt != followed
            if unseen and stream_logs(client, run.id, follow=True):
                followed = run.attempt
                run = client.runs.get(run)
                continue
            # Nothing (more) to stream: sleep on the long-poll until the run changes, or
            # briefly when a running attempt's log has not appeared yet.
            window = LOG_RETRY_SECONDS if unseen else LONG_POLL_SECONDS
            with err.status(f"{run.id} is {run.status}..."):
                run = client.runs.get(run, wait=window, resource_version=run.resource_version)
        if run.attempt and run.attempt != followed:
            # The last attempt ended between two looks (a short run is never seen running):
            # its log is durable, so print it whole.
            stream_logs(client, run.id, follow=True, attempt=run.attempt)
        return run
    except KeyboardInterrupt:
        err.print(f"Stopped following; {run.id} keeps going. Stop it: trainport cancel {run.id}")
        raise typer.Exit(ExitCode.INTERRUPTED) from None


def stream_logs(
    client: Client,
    run_id: str,
    *,
    follow: bool,
    rank: int | None = None,
    attempt: int | None = None,
    tail: int | None = None,
    timestamps: bool = False,
) -> bool:
    """Print the log; False when it does not exist (yet) and we are following."""
    try:
        for line in client.runs.logs(run_id, rank=rank, attempt=attempt, tail=tail, follow=follow):
            print(f"{line.time} {line.text}" if timestamps else line.text, flush=True)
    except NotFound:
        if not follow:
            raise
        return False
    return True


def cancel(
    runs: Annotated[list[str], typer.Argument(help="run ids or names", metavar="RUN...")],
) -> None:
    """Cancel runs: at once if they have not started, else they stop gracefully."""
    client = state.client()
    for run_id in runs:
        run = client.runs.cancel(run_id)
        out.print(f"{run.id}: {run.status}")


def logs(
    run: RunArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep streaming new lines")
    ] = False,
    rank: Annotated[int | None, typer.Option("--rank", min=0, help="one rank only")] = None,
    attempt: Annotated[
        int | None, typer.Option("--attempt", min=0, help="an earlier attempt")
    ] = None,
    tail: Annotated[int | None, typer.Option("--tail", min=0, help="only the last N lines")] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t", help="each line's time (RFC 3339, UTC) first")
    ] = False,
) -> None:
    """Print a run's logs; with -f, follow them until the run ends."""
    stream_logs(
        state.client(), run, follow=follow, rank=rank, attempt=attempt, tail=tail,
        timestamps=timestamps,
    )  # fmt: skip


@runs_app.command("ls")
def list_runs(
    status: Annotated[
        list[RunStatus] | None, typer.Option("--status", "-s", help="repeatable")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="k=v or k; repeatable")
    ] = None,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    name_prefix: Annotated[str | None, typer.Option("--name", help="name prefix")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="at most N runs")] = 50,
    all_runs: Annotated[bool, typer.Option("--all", help="every run, however many")] = False,
    output: OutputOption = Format.TABLE,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="then print each change as it happens")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="seconds between change checks")
    ] = 2.0,
) -> None:
    """List runs, newest first."""
    client = state.client()
    floor = _version_floor(client) if watch else 0
    page = client.runs.list(
        status=[s.value for s in status or []] or None,
        labels=label or None,
        project=project,
        name_prefix=name_prefix,
        limit=min(limit, 200),
    )
    shown = list(page if all_runs else itertools.islice(page, limit))
    if not watch:
        print_runs(shown, output)
        return
    criteria = _Criteria({s.value for s in status or []}, label or [], name_prefix)
    watch_runs(client, shown, floor, criteria, project, output, interval)


def _version_floor(client: Client) -> int:
    """A version read *before* the listing: the watch resumes from here, so no change falls
    between the listing and the first poll of the change feed."""
    return max((r.resource_version for r in client.runs.list(limit=1).data), default=0)


class _Criteria:
    """The `runs ls` filters, applied client-side to the change feed in --watch mode."""

    def __init__(self, statuses: set[str], labels: list[str], name_prefix: str | None) -> None:
        self.statuses = statuses
        self.labels = [item.partition("=") for item in labels]
        self.name_prefix = name_prefix

    def matches(self, run: Run) -> bool:
        if self.statuses and run.status not in self.statuses:
            return False
        if self.name_prefix and not run.name.startswith(self.name_prefix):
            return False
        return all(
            key in run.labels and (not sep or run.labels[key] == value)
            for key, sep, value in self.labels
        )


def watch_runs(
    client: Client,
    shown: list[Run],
    floor: int,
    criteria: _Criteria,
    project: str | None,
    fmt: Format,
    interval: float,
) -> None:
    """Print the runs, then one line per change (like `kubectl get -w`) until interrupted."""
    if fmt is Format.TABLE:
        print(watch_header(), flush=True)
    for run in shown:
        print_change(run, fmt)
    tracked = {run.id for run in shown}
    version = max([floor, *(r.resource_version for r in shown)])
    try:
        while True:
            for page in client.runs.list(changed_since=version, project=project).iter_pages():
                for run in page.data:
                    if run.id in tracked or criteria.matches(run):
                        tracked.add(run.id)
                        print_change(run, fmt)
                version = page.resource_version or version
            time.sleep(interval)
    except KeyboardInterrupt:
        return


@runs_app.command("get")
def get_run(run: RunArg, output: OutputOption = Format.TABLE) -> None:
    """One run (-o json|yaml for the whole document)."""
    print_run(state.client().runs.get(run), output)


@runs_app.command("describe")
def describe_run(run: RunArg) -> None:
    """A run in full: status and why, queue position, attempts, spec and history."""
    client = state.client()
    found = client.runs.get(run)
    describe(found, list(client.runs.events(found, limit=200)))


@runs_app.command("rm")
def remove_runs(
    runs: Annotated[list[str], typer.Argument(help="run ids or names", metavar="RUN...")],
) -> None:
    """Delete finished runs (cancel a running one first)."""
    client = state.client()
    for run_id in runs:
        client.runs.delete(run_id)
        out.print(f"{run_id}: deleted")

"""How the CLI shows things: rich tables for people, JSON and YAML for scripts.

Machine formats go to stdout as plain text (no colour, no wrapping); everything meant for a
person, including progress and errors, is rendered with rich.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import yaml
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from trainport.cli.context import out
from trainport.models import Attempt, Run, RunEvent

STATUS_STYLE = {  # run statuses and attempt outcomes
    "succeeded": "green",
    "system_failed": "red",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "stopping": "magenta",
}
RUN_COLUMNS = ("ID", "NAME", "STATUS", "REASON", "PRIORITY", "ATTEMPT", "AGE")


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


def age(when: datetime | None, now: datetime | None = None) -> str:
    """`42s`, `7m`, `3h`, `2d`: how long ago."""
    if when is None:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def run_row(run: Run) -> tuple[str, ...]:
    reason = run.status_reason or "-"
    return (
        run.id,
        run.name,
        run.status,
        reason,
        run.priority,
        str(run.attempt),
        age(run.created_at),
    )


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, default=str))


def print_yaml(document: Any, *, explicit_start: bool = False) -> None:
    text = yaml.safe_dump(document, sort_keys=False, explicit_start=explicit_start)
    print(text, end="")


def print_runs(runs: Sequence[Run], fmt: Format) -> None:
    if fmt is Format.JSON:
        print_json([r.to_dict() for r in runs])
    elif fmt is Format.YAML:
        print_yaml([r.to_dict() for r in runs])
    else:
        out.print(runs_table(runs))


def print_run(run: Run, fmt: Format) -> None:
    if fmt is Format.JSON:
        print_json(run.to_dict())
    elif fmt is Format.YAML:
        print_yaml(run.to_dict())
    else:
        out.print(runs_table([run]))


def runs_table(runs: Iterable[Run]) -> Table:
    table = Table(*RUN_COLUMNS, box=None, header_style="bold", pad_edge=False)
    for run in runs:
        row = run_row(run)
        style = STATUS_STYLE.get(run.status, "")
        table.add_row(*row[:2], f"[{style}]{row[2]}[/]" if style else row[2], *row[3:])
    return table


def watch_line(run: Run) -> str:
    """One fixed-width line per change, like `kubectl get -w`: readable piped or live."""
    status = "deleted" if run.deleted else run.status
    id_, name, _, reason, priority, attempt, when = run_row(run)
    return f"{id_:<30} {name[:28]:<28} {status:<10} {reason:<22} {priority:<8} {attempt:>3} {when}"


def watch_header() -> str:
    id_, name, status, reason, priority, attempt, when = RUN_COLUMNS
    return f"{id_:<30} {name:<28} {status:<10} {reason:<22} {priority:<8} {attempt:>3} {when}"


def print_change(run: Run, fmt: Format) -> None:
    if fmt is Format.JSON:
        print(json.dumps(run.to_dict(), default=str), flush=True)
    elif fmt is Format.YAML:
        print_yaml(run.to_dict(), explicit_start=True)
    else:
        print(watch_line(run), flush=True)


def describe(run: Run, events: Sequence[RunEvent]) -> None:
    """Everything about one run: status and why, queue position, attempts, spec, history."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    style = STATUS_STYLE.get(run.status, "")
    for label, value in (
        ("Name", run.name),
        ("Project", run.project_id),
        ("Status", f"[{style}]{run.status}[/]" if style else run.status),
        ("Reason", run.status_reason or "-"),
        ("Message", escape(run.status_message or "-")),
        ("Queue", escape(_queue(run))),
        ("Priority", run.priority),
        ("Attempt", str(run.attempt)),
        ("Labels", escape(", ".join(f"{k}={v}" for k, v in run.labels.items()) or "-")),
        ("Created", _when(run.created_at)),
        ("Started", _when(run.started_at)),
        ("Finished", _when(run.finished_at)),
        ("Version", str(run.resource_version)),
    ):
        facts.add_row(label, value)
    out.print(Panel(facts, title=f"[bold]{run.id}[/]", title_align="left"))
    if run.attempts:
        out.print(attempts_table(run.attempts))
    spec = yaml.safe_dump(run.spec, sort_keys=False).rstrip()
    out.print(Panel(Syntax(spec, "yaml", theme="ansi_dark"), title="Spec", title_align="left"))
    out.print(events_table(events))


def attempts_table(attempts: Sequence[Attempt]) -> Table:
    """One row per attempt: where, when, how long, and how it ended."""
    table = Table(
        "#", "WHERE", "GPUS", "STARTED", "DURATION", "OUTCOME", "EXIT", "REASON", "RESUMED",
        title="Attempts", box=None,
    )  # fmt: skip
    for attempt in attempts:
        style = STATUS_STYLE.get(attempt.outcome or "running", "")
        outcome = attempt.outcome or "running"
        table.add_row(
            str(attempt.attempt),
            escape(attempt.where or attempt.cluster),
            f"{attempt.gpus} {attempt.gpu_type or ''}".strip(),
            _when(attempt.started_at or attempt.admitted_at),
            _duration(attempt.started_at or attempt.admitted_at, attempt.ended_at),
            f"[{style}]{outcome}[/]" if style else outcome,
            "-" if attempt.exit_code is None else str(attempt.exit_code),
            escape(attempt.reason or "-"),
            "-" if attempt.resumed_from_step is None else f"step {attempt.resumed_from_step}",
        )
    return table


def _duration(start: datetime | None, end: datetime | None) -> str:
    """`1h02m`, `3m05s`, `12s`; up to now while the attempt runs."""
    if start is None:
        return "-"
    seconds = max(0, int(((end or datetime.now(UTC)) - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def events_table(events: Sequence[RunEvent]) -> Table:
    table = Table("TIME", "EVENT", "FROM", "TO", "REASON", "MESSAGE", title="Events", box=None)
    for event in events:
        table.add_row(
            _when(event.created_at),
            event.kind,
            event.from_status or "",
            event.to_status or "",
            event.reason or "",
            escape(event.message or ""),
        )
    return table


def _queue(run: Run) -> str:
    if run.queue is None:
        return "-"
    position = f"#{run.queue.position} " if run.queue.position is not None else ""
    eta = f" (estimated start {_when(run.queue.eta)})" if run.queue.eta is not None else ""
    return f"{position}{run.queue.reason}: {run.queue.detail}{eta}".strip()


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return f"{value.isoformat(timespec='seconds')} ({age(value)} ago)"

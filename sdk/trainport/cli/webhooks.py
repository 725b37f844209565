"""`trainport webhooks ...`: an organisation's webhook endpoints and their delivery log (admin).

`create` and `rotate-secret` print the signing secret once, on stdout (so `... | vault write`
works); everything else about the endpoint goes to stderr.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from trainport.cli.context import err, out, state
from trainport.cli.output import Format, age, print_json, print_yaml
from trainport.models import WebhookDelivery, WebhookEndpoint

webhooks_app = typer.Typer(help="Send your organisation's events to URLs.", no_args_is_help=True)
IdArgument = Annotated[str, typer.Argument(help="the endpoint id (whe_...)")]
DeliveryArgument = Annotated[str, typer.Argument(help="the delivery id (msg_..., webhook-id)")]
EventsOption = Annotated[
    list[str] | None,
    typer.Option("--event", "-e", help="an event type to send (repeat); none: every event"),
]
OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table for people; json or yaml for scripts")
]


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app, name="webhooks")


def _show(document: Any, output: Format, table: Table) -> None:
    if output is Format.JSON:
        print_json(document)
    elif output is Format.YAML:
        print_yaml(document)
    else:
        out.print(table)


def _secret(endpoint: WebhookEndpoint, verb: str) -> None:
    err.print(f"webhook [bold]{escape(endpoint.id)}[/] {verb}; its signing secret (shown once):")
    print(endpoint.secret)


@webhooks_app.command("create")
def create(
    url: Annotated[str, typer.Argument(help="the receiver's http(s) URL")],
    event: EventsOption = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
) -> None:
    """Register an endpoint; prints its signing secret once."""
    made = state.client().webhooks.create(
        url, event_types=event or None, description=description, project=project
    )
    _secret(made, "created")


@webhooks_app.command("list")
def list_endpoints(output: OutputOption = Format.TABLE) -> None:
    """The organisation's endpoints."""
    found = state.client().webhooks.list()
    _show([e.to_dict() for e in found], output, endpoints_table(found))


def endpoints_table(found: list[WebhookEndpoint]) -> Table:
    table = Table("ID", "URL", "EVENTS", "ENABLED", "FAILURES", box=None)
    for e in found:
        events = ",".join(e.event_types) or "all"
        table.add_row(
            e.id, e.url, events, "yes" if e.enabled else "no", str(e.consecutive_failures)
        )
    return table


@webhooks_app.command("get")
def get(endpoint_id: IdArgument, output: OutputOption = Format.TABLE) -> None:
    endpoint = state.client().webhooks.get(endpoint_id)
    _show(endpoint.to_dict(), output, endpoints_table([endpoint]))


@webhooks_app.command("update")
def update(
    endpoint_id: IdArgument,
    url: Annotated[str | None, typer.Option("--url")] = None,
    event: EventsOption = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
) -> None:
    """Change the URL, the events, the description, or enable/disable it."""
    endpoint = state.client().webhooks.update(
        endpoint_id, url=url, event_types=event, description=description, enabled=enabled
    )
    out.print(endpoints_table([endpoint]))


@webhooks_app.command("delete")
def delete(endpoint_id: IdArgument) -> None:
    state.client().webhooks.delete(endpoint_id)
    err.print(f"webhook [bold]{escape(endpoint_id)}[/] deleted")


@webhooks_app.command("rotate-secret")
def rotate_secret(endpoint_id: IdArgument) -> None:
    """A new signing secret; the previous one keeps signing for a grace period."""
    _secret(state.client().webhooks.rotate_secret(endpoint_id), "has a new secret")


@webhooks_app.command("ping")
def ping(endpoint_id: IdArgument) -> None:
    """Send a webhook.ping event; see it arrive with `trainport webhooks deliveries ID`."""
    delivery = state.client().webhooks.ping(endpoint_id)
    err.print(f"ping queued as delivery [bold]{escape(delivery.id)}[/]")


@webhooks_app.command("deliveries")
def deliveries(
    endpoint_id: IdArgument,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
    output: OutputOption = Format.TABLE,
) -> None:
    """The endpoint's newest deliveries: status, attempts, last answer."""
    found = state.client().webhooks.deliveries(endpoint_id, limit=limit)
    _show([d.to_dict() for d in found], output, deliveries_table(found))


def deliveries_table(found: list[WebhookDelivery]) -> Table:
    table = Table("ID", "EVENT", "STATUS", "ATTEMPTS", "CODE", "LATENCY", "AGE", "ERROR", box=None)
    for d in found:
        latency = f"{d.latency_ms}ms" if d.latency_ms is not None else "-"
        code = str(d.response_code) if d.response_code is not None else "-"
        row = (d.id, d.event_type, d.status, str(d.attempts), code, latency, age(d.created_at))
        table.add_row(*row, escape(d.error or ""))
    return table


@webhooks_app.command("redeliver")
def redeliver(endpoint_id: IdArgument, delivery_id: DeliveryArgument) -> None:
    """Send a delivery again, now, with the same webhook-id."""
    state.client().webhooks.redeliver(endpoint_id, delivery_id)
    err.print(f"delivery [bold]{escape(delivery_id)}[/] queued again")

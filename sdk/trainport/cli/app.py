"""The `trainport` command: global options, the command groups, and errors as exit codes.

Errors print one readable line from the server's problem document (no traceback unless
`--debug`); the exit codes are in `trainport.cli.context.ExitCode` and the SDK README.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer
from rich.markup import escape

from trainport._version import __version__
from trainport.cli import datasets, outputs, profiles, runs, secrets, server, training, webhooks
from trainport.cli.context import ExitCode, err, state
from trainport.errors import AmbiguousRunName, ConfigurationError, TrainportError
from trainport.spec import SpecError

app = typer.Typer(
    name="trainport",
    help="Train models on your Trainport platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
runs.register(app)
training.register(app)
outputs.register(app)
datasets.register(app)
secrets.register(app)
webhooks.register(app)
profiles.register(app)
server.register(app)


def _print_version(value: bool) -> None:
    if value:
        print(f"trainport {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    profile: Annotated[
        str | None, typer.Option("--profile", help="config profile (else $TRAINPORT_PROFILE)")
    ] = None,
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="API URL (else $TRAINPORT_API_URL)")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="API key (else $TRAINPORT_API_KEY)")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks on errors")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print version"),
    ] = False,
) -> None:
    """Submit, follow and manage training runs."""
    state.profile, state.api_url, state.api_key, state.debug = profile, api_url, api_key, debug


def _report(exc: BaseException, code: ExitCode) -> int:
    if state.debug:
        traceback.print_exception(exc, file=sys.stderr)
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (what `main` exits with)."""
    try:
        result = app(args=argv, prog_name="trainport", standalone_mode=False)
    except typer.TyperException as exc:  # bad flags or arguments: typer's own message
        show = getattr(exc, "show", None)
        show() if callable(show) else err.print(f"Error: {escape(str(exc))}")
        return ExitCode.USAGE
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        return ExitCode.INTERRUPTED
    except (ConfigurationError, SpecError, AmbiguousRunName) as exc:
        return _report(exc, ExitCode.USAGE)
    except TrainportError as exc:
        return _report(exc, ExitCode.API_ERROR)
    finally:
        state.close()
    return result if isinstance(result, int) else ExitCode.OK


def main() -> None:
    sys.exit(run())

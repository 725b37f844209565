"""`trainport login` and `trainport config`: profiles in ~/.config/trainport/config.toml."""

from __future__ import annotations

from typing import Annotated

import typer

from trainport.cli.context import err, out, state
from trainport.client import Client
from trainport.config import PROFILE_KEYS, ConfigFile, resolve

config_app = typer.Typer(help="Show or change the client's profiles.", no_args_is_help=False)


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.add_typer(config_app, name="config")


def mask(key: str | None) -> str:
    """Enough of a key to recognise it, never enough to use it."""
    if not key:
        return "(none)"
    return f"{key[:7]}...{key[-4:]}" if len(key) > 16 else "***"


def login(
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="the API's URL (default: current profile's)")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="the key (prompted, hidden, when absent)")
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="profile to write (default: the active one)")
    ] = None,
) -> None:
    """Check a key against /v1/me, then save it (and the URL) as a profile and make it active."""
    current = resolve(api_url or state.api_url, None, profile or state.profile, must_exist=False)
    name = current.profile
    url = current.base_url
    key = api_key or state.api_key or typer.prompt("API key", hide_input=True)
    with Client(base_url=url, api_key=key, profile=None, max_retries=1) as client:
        me = client.me()
    config = ConfigFile.load(current.path)
    config.set_value(name, "api_url", url)
    config.set_value(name, "api_key", key)
    config.active_profile = name
    config.save()
    out.print(
        f"Logged in to {url} as organisation [bold]{me.organization.name}[/] "
        f"with key '{me.key.name}' ({me.key.role})."
    )
    err.print(f"Saved profile '{name}' in {config.path}.")


@config_app.callback(invoke_without_command=True)
def config_main(ctx: typer.Context) -> None:
    """With no subcommand: show the settings in effect."""
    if ctx.invoked_subcommand is None:
        show()


@config_app.command("show")
def show() -> None:
    """The settings in effect, where they come from, and every profile."""
    current = resolve(state.api_url, state.api_key, state.profile)
    config = ConfigFile.load(current.path)
    out.print(f"config file: {current.path}")
    out.print(f"profile:     {current.profile}")
    out.print(f"api_url:     {current.base_url}")
    out.print(f"api_key:     {mask(current.api_key)}")
    out.print(f"project:     {current.project or '(key default)'}")
    for name, settings in config.profiles.items():
        marker = "*" if name == current.profile else " "
        shown = {k: mask(v) if k == "api_key" else v for k, v in settings.items()}
        out.print(f"{marker} {name}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))


@config_app.command("set")
def set_value(
    key: Annotated[str, typer.Argument(help=f"one of {', '.join(PROFILE_KEYS)}")],
    value: Annotated[str, typer.Argument()],
    profile: Annotated[
        str | None, typer.Option("--profile", help="default: the active one")
    ] = None,
) -> None:
    """Set one setting of a profile."""
    current = resolve(state.api_url, state.api_key, profile or state.profile, must_exist=False)
    config = ConfigFile.load(current.path)
    name = current.profile
    config.set_value(name, key, value)
    config.save()
    out.print(f"{name}.{key} = {mask(value) if key == 'api_key' else value}")


@config_app.command("use")
def use(profile: Annotated[str, typer.Argument(help="the profile to make active")]) -> None:
    """Make a profile the active one."""
    config = ConfigFile.load()
    if profile not in config.profiles:
        raise typer.BadParameter(f"no profile {profile!r} in {config.path}", param_hint="PROFILE")
    config.active_profile = profile
    config.save()
    out.print(f"active profile: {profile}")

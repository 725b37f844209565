"""Where a client finds its server and key: arguments, environment, then a config-file profile.

Precedence, highest first: the arguments given to the client, `TRAINPORT_API_URL` /
`TRAINPORT_API_KEY`, then the chosen profile of `~/.config/trainport/config.toml` (chosen by the
`profile=` argument, else `TRAINPORT_PROFILE`, else the file's `active_profile`, else `default`).
`TRAINPORT_CONFIG` points at another config file. The file looks like:

    active_profile = "default"

    [profiles.default]
    api_url = "http://127.0.0.1:8000"
    api_key = "tp_..."
    project = "default"
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from trainport.errors import ConfigurationError

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_PROFILE = "default"
PROFILE_KEYS = ("api_url", "api_key", "project")
PROFILE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def config_path() -> Path:
    """`$TRAINPORT_CONFIG`, else `$XDG_CONFIG_HOME/trainport/config.toml` (~/.config by default)."""
    explicit = os.environ.get("TRAINPORT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "trainport" / "config.toml"


@dataclass
class ConfigFile:
    """The profiles file, read with tomllib and written back in the same simple shape."""

    path: Path
    active_profile: str | None = None
    profiles: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> ConfigFile:
        path = path or config_path()
        if not path.exists():
            return cls(path)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"Cannot read the config file {path}: {exc}") from None
        profiles = document.get("profiles", {})
        tables = isinstance(profiles, dict) and all(isinstance(p, dict) for p in profiles.values())
        if not tables:
            raise ConfigurationError(f"{path}: [profiles.NAME] must be tables of settings.")
        active = document.get("active_profile")
        return cls(
            path,
            active if isinstance(active, str) else None,
            {name: {k: str(v) for k, v in p.items()} for name, p in profiles.items()},
        )

    def set_value(self, profile: str, key: str, value: str) -> None:
        check_profile_name(profile)
        if key not in PROFILE_KEYS:
            known = ", ".join(PROFILE_KEYS)
            raise ConfigurationError(f"Unknown setting {key!r}; use one of {known}.")
        self.profiles.setdefault(profile, {})[key] = value

    def save(self) -> None:
        """Write the file with owner-only permissions: it holds API keys."""
        lines = []
        if self.active_profile:
            lines += [f"active_profile = {_toml_string(self.active_profile)}", ""]
        for name, settings in self.profiles.items():
            lines.append(f"[profiles.{check_profile_name(name)}]")
            lines += [f"{key} = {_toml_string(value)}" for key, value in settings.items()]
            lines.append("")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines))


def check_profile_name(name: str) -> str:
    if not PROFILE_NAME.match(name):
        raise ConfigurationError(f"Profile name {name!r} must be 1-64 letters, digits, '-' or '_'.")
    return name


def _toml_string(value: str) -> str:
    # A JSON string with ASCII escapes is also a valid TOML basic string.
    return json.dumps(value, ensure_ascii=True)


@dataclass(frozen=True)
class ResolvedConfig:
    """The settings a client runs with, and where each came from (for `trainport config`)."""

    base_url: str
    api_key: str | None
    profile: str
    project: str | None = None
    path: Path | None = None

    def require_key(self) -> str:
        if not self.api_key:
            raise ConfigurationError(
                "No Trainport API key configured: pass api_key=..., set TRAINPORT_API_KEY, "
                f"or run `trainport login` (profile {self.profile!r}, file {self.path})."
            )
        return self.api_key


def resolve(
    base_url: str | None = None,
    api_key: str | None = None,
    profile: str | None = None,
    path: Path | None = None,
    *,
    must_exist: bool = True,
) -> ResolvedConfig:
    """Settings from arguments, then the environment, then the config file's profile.

    A profile asked for by name (argument or TRAINPORT_PROFILE) must exist unless `must_exist`
    is false (`trainport login --profile NEW` is about to create it).
    """
    config = ConfigFile.load(path)
    requested = profile or os.environ.get("TRAINPORT_PROFILE")
    chosen = requested or config.active_profile or DEFAULT_PROFILE
    settings = config.profiles.get(chosen)
    explicit = base_url is not None and api_key is not None  # the profile adds nothing then
    if settings is None and requested and must_exist and not explicit:
        known = ", ".join(sorted(config.profiles)) or "none"
        raise ConfigurationError(
            f"No profile {chosen!r} in {config.path} (profiles: {known}); "
            "create it with `trainport login --profile NAME`."
        )
    settings = settings or {}
    url = base_url or os.environ.get("TRAINPORT_API_URL") or settings.get("api_url")
    return ResolvedConfig(
        base_url=(url or DEFAULT_BASE_URL).rstrip("/"),
        api_key=api_key or os.environ.get("TRAINPORT_API_KEY") or settings.get("api_key"),
        profile=chosen,
        project=settings.get("project"),
        path=config.path,
    )

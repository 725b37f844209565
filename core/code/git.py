"""Git sources: where the server may fetch from, resolving a ref, and packing a commit.

A run's `git.url` is a URL a user named, fetched by the server: an SSRF risk. So:

- only `https://` (or `http://`) URLs of hosts in `TRAINPORT_GIT_ALLOWED_HOSTS` (`*`: any
  public host), and `file://` paths only with `TRAINPORT_GIT_ALLOW_FILE_URLS` (tests, labs);
  `ssh://`, `git://` and scp-like addresses are refused, since they cannot be vetted;
- the host is resolved and vetted by core/egress.py's rules (public addresses only, unless in
  `TRAINPORT_EGRESS_ALLOWED_NETWORKS`), and git is pinned to the vetted address
  (`http.curloptResolve`), so a second DNS answer cannot point it elsewhere;
- git runs with no system or user configuration, no prompts, no redirects, and only the
  protocol of the URL allowed (submodules and `insteadOf` tricks reach nothing else);
- a password (`git.password: {secret: NAME}`) travels in git's environment as an
  `Authorization` header, never on a command line or in a URL.

Every git command has `TRAINPORT_GIT_TIMEOUT_SECONDS`. Packing a commit is `git archive` of
exactly that commit: deterministic, so the same commit packs to the same snapshot digest.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from core.egress import EgressPolicy, EgressRefused, vet
from core.errors import Forbidden, InvalidInput, TrainportError
from core.settings import Settings

COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class GitUnavailable(TrainportError):
    """git could not reach the repository or find the ref/commit (worth a later try)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, 422, "git_unavailable", "Git source unavailable")


class RefNotFound(GitUnavailable):
    """The repository answered, and has no such branch or tag."""


@dataclass(frozen=True)
class GitSource:
    url: str
    ref: str | None = None
    commit: str | None = None
    username: str = "git"
    password: str | None = field(default=None, repr=False)


def check_url(url: str, settings: Settings) -> None:
    """Refuse a URL the operator did not allow, before anything is fetched."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if not settings.git_allow_file_urls:
            raise Forbidden(
                f"{url!r}: file:// git URLs are refused on this platform "
                "(TRAINPORT_GIT_ALLOW_FILE_URLS)."
            ).with_code("git_host_not_allowed")
        return
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise InvalidInput(f"{url!r}: git sources are https:// URLs (ssh and git:// are not).")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            f"{url!r}: put no credentials in the URL; name a secret in `git.password`."
        )
    allowed = settings.git_allowed_hosts
    if "*" not in allowed and parts.hostname.lower() not in {h.lower() for h in allowed}:
        raise Forbidden(
            f"Git host {parts.hostname!r} is not allowed on this platform; an operator allows "
            "hosts in TRAINPORT_GIT_ALLOWED_HOSTS (now: "
            f"{', '.join(allowed) or 'none'})."
        ).with_code("git_host_not_allowed")


def _pinned(url: str, settings: Settings) -> dict[str, str]:
    """git configuration that pins an http(s) URL's host to its vetted address."""
    if urlsplit(url).scheme == "file":
        return {"protocol.file.allow": "always"}
    policy = EgressPolicy.allowing(settings.egress_allowed_networks)
    try:
        target = vet(url, policy)
    except EgressRefused as refused:
        raise refused.with_code("git_host_not_allowed") from None
    address = f"[{target.address}]" if target.address.version == 6 else str(target.address)
    scheme = urlsplit(url).scheme
    return {
        "http.curloptResolve": f"{target.host}:{target.port}:{address}",
        f"protocol.{scheme}.allow": "always",
        "http.followRedirects": "false",
    }


def _environment(source: GitSource, config: dict[str, str], home: str) -> dict[str, str]:
    settings = {"protocol.allow": "never", "credential.helper": "", **config}
    if source.password is not None:
        pair = f"{source.username}:{source.password}".encode()
        settings["http.extraHeader"] = "Authorization: Basic " + base64.b64encode(pair).decode()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_CONFIG_COUNT": str(len(settings)),
    }
    for index, (key, value) in enumerate(settings.items()):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    return env


def _git(
    args: list[str], source: GitSource, settings: Settings, cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    env = _environment(source, _pinned(source.url, settings), str(cwd))
    try:
        done = subprocess.run(  # noqa: S603 - fixed git subcommands; the URL comes after `--`
            ["git", *args], cwd=cwd, env=env, capture_output=True,  # noqa: S607 - git on PATH
            timeout=settings.git_timeout_seconds, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise GitUnavailable(
            f"git {args[0]} of {source.url} took over {settings.git_timeout_seconds:g}s."
        ) from None
    except FileNotFoundError:
        raise GitUnavailable("git is not installed on this server.") from None
    if done.returncode != 0:
        message = _redacted(done.stderr.decode(errors="replace"), source).strip()[-500:]
        raise GitUnavailable(f"git {args[0]} of {source.url} failed: {message}")
    return done


def _redacted(text: str, source: GitSource) -> str:
    return text.replace(source.password, "***") if source.password else text


def resolve(source: GitSource, settings: Settings) -> str:
    """The commit `source` names now: its `commit`, else what its ref points at."""
    if source.commit:
        return source.commit
    ref = source.ref or "HEAD"
    with tempfile.TemporaryDirectory(prefix="trainport-git-") as home:
        done = _git(["ls-remote", "--", source.url, ref], source, settings, Path(home))
    for line in done.stdout.decode().splitlines():
        commit, _, name = line.partition("\t")
        if name in {ref, f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"}:
            return _peeled(done.stdout.decode(), ref) or commit
    if COMMIT.fullmatch(ref):
        return ref
    raise RefNotFound(f"{source.url} has no branch or tag {ref!r}.")


def _peeled(listing: str, ref: str) -> str | None:
    """An annotated tag's commit (`refs/tags/v1^{}`), not the tag object's id."""
    for line in listing.splitlines():
        commit, _, name = line.partition("\t")
        if name == f"refs/tags/{ref}^{{}}":
            return commit
    return None


@contextmanager
def packed(source: GitSource, commit: str, settings: Settings) -> Iterator[Path]:
    """A tar file of exactly `commit` (fetched shallowly), removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="trainport-git-") as scratch:
        folder = Path(scratch)
        _git(["init", "--quiet", "--bare", "repo.git"], source, settings, folder)
        repo = folder / "repo.git"
        fetch = ["fetch", "--quiet", "--depth", "1", "--no-tags", "--", source.url, commit]
        _git(fetch, source, settings, repo)
        archive = folder / "code.tar"
        _git(["archive", "--format=tar", f"--output={archive}", commit], source, settings, repo)
        yield archive

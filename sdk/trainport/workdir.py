"""Packing a local folder as a run's code: what goes in, the archive, and its digest.

What goes in: every file under the folder except `.git/` and what a `.gitignore` or
`.trainportignore` (in the folder or any folder below it, git's pattern rules) leaves out.
The archive is an uncompressed tar laid out deterministically (sorted paths, no owners, no
times, modes reduced to 0644/0755), so the same files always make the same bytes, and the
snapshot's identity is `sha256:<hex>` of those bytes: the server recomputes it, and a second
upload of the same content is skipped after one `HEAD`.

Packing is streamed twice, never written to disk: once to hash, once to send.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from trainport.spec import SpecError

DEFAULT_MAX_BYTES = 1 << 30
CHUNK = 1 << 20
BLOCK = 512
IGNORE_FILES = (".gitignore", ".trainportignore")
Progress = Callable[[int], None]


class WorkdirTooLarge(SpecError):
    """The folder is larger than the limit; the message names its largest files."""


@dataclass(frozen=True)
class Entry:
    path: str  # relative, POSIX
    source: Path
    size: int
    executable: bool = False
    link: str | None = None


@dataclass(frozen=True)
class GitState:
    """The git working tree the folder is, in the packer's words (reported, not observed)."""

    repo: str
    commit: str
    dirty: bool


@dataclass(frozen=True)
class Packed:
    root: Path
    entries: list[Entry]
    size: int  # of the archive
    digest: str
    git: GitState | None = field(default=None)

    def chunks(self, progress: Progress | None = None) -> Iterator[bytes]:
        return archive_chunks(self.entries, progress)


def pack(root: str | Path, max_bytes: int | None = None) -> Packed:
    """The folder's entries, archive size and digest (read once, nothing written)."""
    folder = Path(root).expanduser().resolve()
    if not folder.is_dir():
        raise SpecError(f"workdir {root} is not a folder.")
    entries = collect(folder)
    limit = max_bytes or int(os.environ.get("TRAINPORT_WORKDIR_MAX_BYTES", DEFAULT_MAX_BYTES))
    _check_size(folder, entries, limit)
    digest, size = hashlib.sha256(), 0
    for chunk in archive_chunks(entries):
        digest.update(chunk)
        size += len(chunk)
    return Packed(folder, entries, size, "sha256:" + digest.hexdigest(), git_state(folder))


def _check_size(folder: Path, entries: list[Entry], limit: int) -> None:
    total = sum(e.size for e in entries)
    if total <= limit:
        return
    largest = sorted(entries, key=lambda e: e.size, reverse=True)[:5]
    names = ", ".join(f"{e.path} ({e.size / 2**20:.1f} MiB)" for e in largest)
    raise WorkdirTooLarge(
        f"workdir {folder} holds {total / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB "
        f"limit. Largest files: {names}. Leave data and outputs out with a .trainportignore "
        "(gitignore syntax) and use datasets for data, or raise TRAINPORT_WORKDIR_MAX_BYTES."
    )


# -- what goes in ------------------------------------------------------------------------------


def collect(folder: Path) -> list[Entry]:
    """Every file to pack, sorted by path."""
    found: list[Entry] = []
    rules: list[tuple[str, object]] = []
    for current, dirs, files in os.walk(folder):
        relative = Path(current).relative_to(folder).as_posix()
        base = "" if relative == "." else relative + "/"
        rules = [r for r in rules if base.startswith(r[0])] + _rules(Path(current), base)
        dirs[:] = sorted(
            d
            for d in dirs
            if d != ".git"
            and not _ignored(rules, base + d + "/")
            and not os.path.islink(os.path.join(current, d))
        )
        links = [d for d in os.listdir(current) if os.path.islink(os.path.join(current, d))]
        for name in sorted(set(files) | {d for d in links if os.path.isdir(Path(current, d))}):
            path = base + name
            if not _ignored(rules, path):
                entry = _entry(Path(current, name), path)
                if entry is not None:
                    found.append(entry)
    return sorted(found, key=lambda e: e.path)


def _rules(folder: Path, base: str) -> list[tuple[str, object]]:
    import pathspec

    lines: list[str] = []
    for name in IGNORE_FILES:
        ignore = folder / name
        if ignore.is_file():
            lines += ignore.read_text(errors="replace").splitlines()
    return [(base, pathspec.GitIgnoreSpec.from_lines(lines))] if lines else []


def _ignored(rules: list[tuple[str, object]], path: str) -> bool:
    return any(spec.match_file(path[len(base) :]) for base, spec in rules)  # type: ignore[attr-defined]


def _entry(source: Path, path: str) -> Entry | None:
    info = source.lstat()
    if stat.S_ISLNK(info.st_mode):
        return Entry(path, source, 0, link=os.readlink(source))
    if not stat.S_ISREG(info.st_mode):
        return None  # sockets, pipes, devices
    return Entry(path, source, info.st_size, bool(info.st_mode & 0o100))


def git_state(folder: Path) -> GitState | None:
    """The commit and dirty state when the folder is a git working tree (and git is here)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(  # noqa: S603 - fixed arguments
                ["git", "-C", str(folder), *args],  # noqa: S607 - git from PATH
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain")
    remote = git("config", "--get", "remote.origin.url") or folder.as_uri()
    return GitState(_without_credentials(remote), commit, bool(status))


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.hostname or ""))


# -- the archive ------------------------------------------------------------------------------


def archive_chunks(entries: list[Entry], progress: Progress | None = None) -> Iterator[bytes]:
    """The deterministic tar archive of `entries`, in pieces of at most about CHUNK bytes."""
    for entry in entries:
        yield _header(entry)
        if entry.link is None:
            yield from _content(entry, progress)
    yield b"\0" * (2 * BLOCK)


def _header(entry: Entry) -> bytes:
    info = tarfile.TarInfo(entry.path)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if entry.link is not None:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.link, 0o777
    else:
        info.size, info.mode = entry.size, 0o755 if entry.executable else 0o644
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _content(entry: Entry, progress: Progress | None) -> Iterator[bytes]:
    sent = 0
    with entry.source.open("rb") as source:
        while sent < entry.size and (chunk := source.read(min(CHUNK, entry.size - sent))):
            sent += len(chunk)
            if progress is not None:
                progress(len(chunk))
            yield chunk
    if sent != entry.size:
        raise SpecError(f"{entry.source} changed size while it was packed; try again.")
    if entry.size % BLOCK:
        yield b"\0" * (BLOCK - entry.size % BLOCK)

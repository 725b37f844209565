"""The bubblewrap command line that confines one local rank (docs/security-sandbox.md).

A sandboxed rank runs as `bwrap ARGS -- [setpriv ARGS --] COMMAND`, started by its shim (which
stays outside, as the worker's user, to write the log and the exit record). Inside it sees:

- the system read-only: /usr, /etc, /opt, /sys and the /bin, /lib... links; a fresh /proc of
  its own PID namespace (no other process), a minimal /dev (plus GPUs), a private /tmp;
- the interpreter, its virtualenv and the import path the worker itself uses, read-only, so
  `python -m trainport.recipes.lm` works; with every platform folder (state, store, logs,
  database) masked by an empty tmpfs where one of them lies under those;
- its own folders read-write (attempt workdir, the run's checkpoint folder, cache and home)
  and its pinned `file://` datasets read-only, each at the same path as outside, so every
  TRAINPORT_* value the run was given stays true.

As root (with `ip` and `nsenter`), the command enters its attempt's own network namespace
first (`nsenter --net=... bwrap ...`, local_netns.py): it reaches its peer ranks and the API,
which its shim forwards in, and nothing else. Otherwise the network stays shared.

As root, the rank then switches to its run's own uid (`setpriv`): the same uid for every
attempt of a run (its checkpoint folder outlives attempts), another for every other run.
Without root, bwrap confines it in a user namespace and it keeps the worker's uid.
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.sandbox import SandboxSupport, for_settings
from core.settings import DEFAULT_STATE_DIR, Settings, StorageBackend
from workers.executors.local_shim import ENVIRONMENT_FD

SYSTEM_DIRS = ("/usr", "/etc", "/opt", "/sys")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri", "/dev/kfd")


@dataclass(frozen=True)
class RankSandbox:
    """How this worker confines ranks: found once, at start (`rank_sandbox(settings)`)."""

    bwrap: str
    setpriv: str | None  # as root: ranks switch to their run's uid
    uids: range
    hidden: tuple[Path, ...]  # platform paths no rank may see, even under a visible folder
    code: tuple[Path, ...]  # the interpreter and import path, shown read-only
    ip: str | None = None  # both set: each attempt gets its own network namespace
    nsenter: str | None = None
    forwarded: tuple[str, ...] = ()  # URLs ranks may reach besides the API (the S3 endpoint)

    @property
    def isolates_network(self) -> bool:
        return self.ip is not None and self.nsenter is not None

    def uid_for(self, run_id: str) -> int:
        """The run's uid: stable across attempts, spread over the range."""
        if self.setpriv is None:
            return os.geteuid()
        digest = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big")
        return self.uids[digest % len(self.uids)]

    def give(self, folders: list[Path], uid: int) -> None:
        """Make the rank's own folders its uid's (and nobody else's) before it starts."""
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            if self.setpriv is None:
                continue  # a user namespace: the rank is the worker's user, who owns them
            for path in [folder, *_tree(folder)]:
                os.chown(path, uid, uid, follow_symlinks=False)  # a planted link stays a link
            folder.chmod(0o700)

    def show(self, datasets: list[Path]) -> None:
        """Make pinned versions stored before the store wrote objects 0444 (they were 0600)
        readable, never writable, for a rank that runs as another uid. One look per version
        when it is already so."""
        if self.setpriv is None:
            return
        for folder in datasets:
            files = (p for p in _walk(folder) if p.is_file() and not p.is_symlink())
            first = next(files, None)
            if first is None or first.stat().st_mode & 0o777 == 0o444:
                continue
            for path in [folder, *_walk(folder)]:
                if not path.is_symlink():
                    path.chmod(0o755 if path.is_dir() else 0o444)

    def argv(
        self,
        uid: int,
        writable: list[Path],
        readable: list[Path],
        workdir: Path,
        network: tuple[Path, Path] | None = None,
    ) -> list[str]:
        """The prefix that runs a command in the sandbox; `network` (the attempt's namespace
        and the rank's hosts file) when it has a network of its own."""
        # The command's environment comes from the shim through a descriptor (`--args`):
        # bwrap and nsenter themselves run with none (local_shim.py says why).
        args = [self.bwrap, "--args", ENVIRONMENT_FD, "--die-with-parent", "--unshare-pid"]
        args += ["--unshare-ipc"]
        args += ["--unshare-cgroup-try", "--proc", "/proc", "--dev", "/dev"]
        args += ["--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108 - the sandbox's own
        args += _system() + _gpus()
        if network is not None and self.nsenter is not None:
            namespace, hosts = network
            args = [self.nsenter, f"--net={namespace}", "--", *args]  # exec, no extra process
            args += ["--ro-bind", str(hosts), "/etc/hosts"]
        own = [*readable, *writable]
        masks = _masked(self.hidden, self.code)
        made = {"/", "/tmp"}  # noqa: S108 - the sandbox's own tmpfs
        args += _parents([*self.code, *own], self.code, [], made)
        args += _each("--ro-bind-try", _outermost(self.code))
        args += [arg for path in masks for arg in _mask(path)]
        args += _parents(own, self.code, masks, made)
        args += _each("--ro-bind-try", readable) + _each("--bind", writable)
        args += ["--chdir", str(workdir), "--"]
        if self.setpriv is None:
            return args
        drop = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs"]
        return [*args, self.setpriv, *drop, "--inh-caps=-all", "--bounding-set=-all", "--"]


def rank_sandbox(settings: Settings, support: SandboxSupport | None = None) -> RankSandbox | None:
    """The sandbox this worker's ranks run in; None where it is off or cannot work here."""
    support = support or for_settings(settings)
    if support.bwrap is None:
        return None
    hidden = [settings.state_dir, settings.storage_root, settings.log_root]
    if settings.is_sqlite:
        hidden.append(Path(settings.database_url.split("///", 1)[-1]))
    forwarded = (settings.s3_endpoint_url,) if settings.s3_endpoint_url else ()
    return RankSandbox(
        support.bwrap,
        support.setpriv,
        support.uids,
        tuple(Path(p).resolve() for p in hidden),
        _code_paths(),
        support.ip,
        support.nsenter,
        forwarded if settings.storage_backend is StorageBackend.S3 else (),
    )


def sandbox_environment(home: Path) -> dict[str, str]:
    """Variables that must change inside: the worker's HOME, TMPDIR and user are not there."""
    user = "trainport-run"
    return {"HOME": str(home), "TMPDIR": "/tmp", "USER": user, "LOGNAME": user}  # noqa: S108


def _code_paths() -> tuple[Path, ...]:
    """The interpreter and every folder of this worker's import and library paths (its venv,
    our code), which ranks inherit."""
    found = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)]
    found.append(os.path.dirname(os.path.realpath(sys.executable)))
    found += [entry for entry in sys.path if entry]
    for variable in ("PYTHONPATH", "LD_LIBRARY_PATH"):  # ranks inherit both (CUDA's libraries)
        found += os.environ.get(variable, "").split(os.pathsep)
    paths = {Path(p).resolve() for p in found if p and os.path.exists(p)}
    return tuple(sorted(p for p in paths if str(p) != "/"))


def _outermost(paths: tuple[Path, ...]) -> list[Path]:
    """`paths` without those inside another of them: a bind mount brings what lies below it
    (`sys.prefix` brings its `bin` and `lib/python3.x`), and each mount is the kernel's work on
    every rank's start (15 of a launch's 98 arguments here)."""
    texts = [str(p) for p in paths]
    return [
        p
        for p, text in zip(paths, texts, strict=True)
        if not _under(text, [t for t in texts if t != text])
    ]


def _system() -> list[str]:
    args = _each("--ro-bind-try", [Path(p) for p in SYSTEM_DIRS])
    for link in SYSTEM_LINKS:
        if os.path.islink(link):  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    resolv = os.path.realpath("/etc/resolv.conf")
    if not resolv.startswith("/etc/"):  # e.g. systemd-resolved's stub under /run
        args += ["--ro-bind-try", resolv, resolv]
    return args


def _gpus() -> list[str]:
    devices = sorted({d for pattern in GPU_DEVICES for d in glob.glob(pattern)})
    return [arg for device in devices for arg in ("--dev-bind", device, device)]


def _masked(hidden: tuple[Path, ...], shown: tuple[Path, ...]) -> list[Path]:
    """Platform paths (and any default `.trainport` state) that lie under a shown folder."""
    candidates = [*hidden, *(root / DEFAULT_STATE_DIR for root in shown)]
    found = sorted(p for p in set(candidates) if p.exists() and _under(p, shown))
    return [p for p in found if not any(p != q and p.is_relative_to(q) for q in found)]


def _mask(path: Path) -> list[str]:
    if path.is_dir():
        return ["--tmpfs", str(path)]
    return ["--ro-bind", "/dev/null", str(path)]


def _parents(
    targets: list[Path], shown: tuple[Path, ...], masks: list[Path], made: set[str]
) -> list[str]:
    """Create the folders above mount points traversable (0755), before the mounts: bwrap
    would make them 0700 and root's, and a rank that dropped to its uid could not reach what
    is mounted below. Folders a read-only mount provides are left alone (they exist, and
    cannot be changed); called again after the masks for folders inside those.

    On strings, not `Path`s: this runs for every folder above every mount on every launch,
    where pathlib cost ~7 ms of the worker's CPU a launch (issue 17)."""
    shown_at, masked = [str(p) for p in shown], [str(p) for p in masks]
    args = []
    for target in targets:
        for parent in _ancestors(str(target)):
            if parent in made or parent in masked:
                continue
            if _under(parent, shown_at) and not _under(parent, masked):
                continue
            made.add(parent)
            args += ["--perms", "0755", "--dir", parent]
    return args


def _ancestors(path: str) -> list[str]:
    """The folders above an absolute, normalised `path`, from the root down: `/a/b/c` gives
    `/`, `/a`, `/a/b` (`reversed(Path(path).parents)`)."""
    parts = path.strip("/").split("/")[:-1]
    return ["/"] + ["/" + "/".join(parts[: depth + 1]) for depth in range(len(parts))]


def _under(path: str | Path, roots: Sequence[str | Path]) -> bool:
    """`path` is a root or lies under one: `Path.is_relative_to`'s lexical test, on strings (the
    paths here are absolute and normalised)."""
    text = str(path)
    return any(text == str(root) or text.startswith(f"{str(root).rstrip('/')}/") for root in roots)


def _each(option: str, paths: list[Path] | tuple[Path, ...]) -> list[str]:
    return [arg for path in paths for arg in (option, str(path), str(path))]


def _tree(folder: Path) -> list[Path]:
    return list(_walk(folder))


def _walk(folder: Path) -> Iterator[Path]:
    """Everything under `folder`, never following a symbolic link out of it."""
    for root, dirs, files in os.walk(folder):
        yield from (Path(root, name) for name in dirs + files)

"""Whether this machine can sandbox the local executor's ranks, said the same way everywhere.

The local executor runs each rank under bubblewrap (`bwrap`, Debian package `bubblewrap`):
its own mount, PID and IPC namespaces, the system read-only, only its own folders writable
(workers/executors/local_sandbox.py builds the command line; docs/security-sandbox.md says
why). This module only decides whether that works here, so the API (`/readyz`, the start-up
warning), the operator tools (`python -m api.admin bootstrap`) and the worker all agree:

- `TRAINPORT_SANDBOX=off`: never sandboxed.
- `auto` (default): sandboxed when a trial `bwrap` run succeeds here — as root (ranks then
  switch to a per-run uid with `setpriv`) or as a user allowed unprivileged user namespaces.
- `bwrap`: the same, but a worker that cannot sandbox refuses to start.

As root with `ip` and `nsenter` (and `TRAINPORT_SANDBOX_NETWORK=isolated`, the default), each
attempt also gets a network namespace of its own (workers/executors/local_netns.py): its ranks
reach each other and the API, nothing else of the host. Otherwise they share the host's network.

Without a sandbox every rank can read what the worker's user can, so the embedded mode
(SQLite, runs on this machine) serves one organisation only.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from functools import lru_cache

from core.settings import SandboxMode, SandboxNetwork, Settings

TRIAL_TIMEOUT_SECONDS = 10.0
INSTALL_HINT = "install bubblewrap (apt-get install bubblewrap)"
log = logging.getLogger("trainport.sandbox")


class SandboxRequired(Exception):
    """TRAINPORT_SANDBOX=bwrap, and this machine cannot sandbox: the worker must not start."""


@dataclass(frozen=True)
class SandboxSupport:
    """What this machine can do; `bwrap` (and `setpriv`, as root) set when ranks are sandboxed."""

    mode: SandboxMode
    bwrap: str | None = None
    setpriv: str | None = None  # as root: drops each rank to its run's uid
    uids: range = range(0)
    problem: str = ""  # why not, when unavailable
    ip: str | None = None  # both set when each attempt gets its own network namespace
    nsenter: str | None = None
    network_problem: str = ""  # why the network is shared, when it is

    @property
    def isolates_network(self) -> bool:
        return self.available and self.ip is not None and self.nsenter is not None

    @property
    def available(self) -> bool:
        return self.bwrap is not None

    def describe(self) -> str:
        """One line for /readyz and the logs: `bwrap: ...`, `off: ...` or `unavailable: ...`."""
        if self.mode is SandboxMode.OFF:
            return (
                "off: TRAINPORT_SANDBOX=off; ranks run as the worker's user and see what it "
                "sees, its network included"
            )
        if not self.available:
            return f"unavailable: {self.problem}"
        if self.setpriv is not None:
            who = f"as uids {self.uids.start}-{self.uids.stop - 1}, one per run"
        else:
            who = "in a user namespace, as the worker's user"
        if self.isolates_network:
            net = "network: one namespace per attempt, only the API (and storage) forwarded in"
        else:
            net = f"network: shared with the host ({self.network_problem})"
        return f"bwrap: ranks run in their own mount, PID and IPC namespaces, {who}; {net}"


def detect(
    mode: SandboxMode,
    uid_first: int = 1_000_000,
    uid_count: int = 65_536,
    network: SandboxNetwork = SandboxNetwork.ISOLATED,
) -> SandboxSupport:
    """This machine's support for `mode` (the trial run is made once per process)."""
    if mode is SandboxMode.OFF:
        return SandboxSupport(mode)
    support = _detect(mode, shutil.which("bwrap"), os.geteuid() == 0, uid_first, uid_count)
    if not support.available:
        return support
    return _with_network(support, network)


def for_settings(settings: Settings) -> SandboxSupport:
    return detect(
        settings.sandbox,
        settings.sandbox_uid_first,
        settings.sandbox_uid_count,
        settings.sandbox_network,
    )


@lru_cache(maxsize=8)
def _with_network(support: SandboxSupport, network: SandboxNetwork) -> SandboxSupport:
    """`support` plus a network namespace per attempt where that can be had: it takes root (to
    create and enter named namespaces) and `ip` and `nsenter`."""
    problem = ""
    ip, nsenter = shutil.which("ip"), shutil.which("nsenter")
    if network is SandboxNetwork.HOST:
        problem = "TRAINPORT_SANDBOX_NETWORK=host"
    elif support.setpriv is None:
        problem = "the worker is not root, so it cannot create network namespaces"
    elif ip is None or nsenter is None:
        problem = "ip (iproute2) or nsenter (util-linux) is not on PATH"
    elif said := _trial_network(support.bwrap or "bwrap"):
        problem = f"cannot create a network namespace here ({said})"
    if problem:
        return replace(support, network_problem=problem)
    return replace(support, ip=ip, nsenter=nsenter)


def _trial_network(bwrap: str) -> str:
    argv = [bwrap, "--ro-bind", "/", "/", "--unshare-net", "--die-with-parent", "--", "true"]
    try:
        done = subprocess.run(  # noqa: S603 - fixed arguments, a program found on PATH
            argv, capture_output=True, text=True, timeout=TRIAL_TIMEOUT_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if done.returncode == 0 else (done.stderr.strip() or "no message")


@lru_cache(maxsize=8)
def _detect(
    mode: SandboxMode, bwrap: str | None, as_root: bool, uid_first: int, uid_count: int
) -> SandboxSupport:
    uids = range(uid_first, uid_first + uid_count)
    if bwrap is None:
        return SandboxSupport(mode, problem=f"bubblewrap (bwrap) is not on PATH; {INSTALL_HINT}")
    setpriv = shutil.which("setpriv") if as_root else None
    if as_root and setpriv is None:
        problem = "setpriv (util-linux) is not on PATH: as root, ranks cannot drop to their uid"
        return SandboxSupport(mode, problem=problem)
    # Both ends of the uid range: a container's user namespace may map fewer uids than that.
    for uid in (uids[0], uids[-1]) if setpriv else (None,):
        problem = _trial(bwrap, setpriv, uid)
        if problem:
            return SandboxSupport(mode, problem=problem)
    return SandboxSupport(mode, bwrap, setpriv, uids)


def _trial(bwrap: str, setpriv: str | None, uid: int | None) -> str:
    """Run `true` the way ranks run; empty when it worked, else bwrap's complaint."""
    argv = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    argv += ["--unshare-pid", "--unshare-ipc", "--die-with-parent", "--"]
    if setpriv is not None and uid is not None:
        argv += [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    try:
        done = subprocess.run(  # noqa: S603 - fixed arguments, programs found on PATH
            [*argv, "true"], capture_output=True, text=True, timeout=TRIAL_TIMEOUT_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not be run: {exc}"
    if done.returncode == 0:
        return ""
    said = (done.stderr.strip().splitlines() or ["no message"])[-1]
    return (
        f"bwrap cannot create namespaces here ({said}); run the worker as root or allow "
        "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
    )


def single_organisation_reason(settings: Settings) -> str | None:
    """Why this embedded platform may hold only one organisation; None when it may hold many."""
    if not (settings.local_cluster and settings.is_sqlite):
        return None  # runs do not run here unsandboxed, or it is not the embedded mode
    support = for_settings(settings)
    if support.available:
        return None
    return (
        f"runs on this machine are not sandboxed ({support.describe()}), so any run could read "
        "every organisation's data: this embedded platform serves one organisation only. "
        f"To serve more, {INSTALL_HINT} and run the worker as root or with unprivileged user "
        "namespaces, with TRAINPORT_SANDBOX=auto or bwrap."
    )


def announce(settings: Settings, *, enforce: bool = False) -> SandboxSupport:
    """At start: a warning when local ranks are not sandboxed. With `enforce` (the worker),
    SandboxRequired when TRAINPORT_SANDBOX=bwrap and they cannot be."""
    support = for_settings(settings)
    if not settings.local_cluster:
        return support
    if enforce and settings.sandbox is SandboxMode.BWRAP and not support.available:
        raise SandboxRequired(
            f"TRAINPORT_SANDBOX=bwrap, but runs cannot be sandboxed here: {support.problem}"
        )
    if not support.available:
        log.warning("runs of the local executor are not sandboxed: %s", support.describe())
    return support

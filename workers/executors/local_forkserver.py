"""The local executor's fork server: one interpreter with the shim loaded, forking a shim a rank.

Starting a rank's shim as a new interpreter cost ~27 ms of CPU and as long before the command
could start, nearly all of it the interpreter and the shim's imports (json, subprocess,
pathlib, core.logs), paid again on every launch (issue 17). The executor starts this server
once per worker process, `python -S -m workers.executors.local_forkserver REQUESTS EXITS`, in
a session of its own and with a clean environment; the server imports the shim and waits. For
each rank it forks: the child takes a session of its own (as `start_new_session` did), its
log as stdout and stderr, the forwarded listeners at the descriptor numbers its config names,
and runs the shim (`local_shim.run_rank`) with the rank's environment, which only the command
sees. Nothing else changes: the shim claims its rank, writes its log and exit record, and
outlives the worker and this server as before, re-adopted through its files.

Protocol, on a SOCK_SEQPACKET pair (a message a datagram): the executor sends `{"config":
PATH, "log": PATH, "environment": {...}, "fds": [N, ...]}` with the listeners attached
(SCM_RIGHTS) and reads back `{"pid": PID}` or `{"error": "..."}`. The server writes `PID\\n`
to the EXITS pipe for every shim it reaps, which the executor turns into a reconcile pass.
The server exits when the executor's end closes (the worker died or stopped).

Standard library plus the shim only: this module is imported by the executor too
(`ForkServer`, its side of the protocol).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from pathlib import Path

from workers.executors import local_shim

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAX_MESSAGE = 1 << 20  # a rank's environment and config paths; spec env is far smaller
MAX_FDS = 64
REPLY_SECONDS = 10.0  # the server answers in a fork's time; past this the executor gives up
STOP_SECONDS = 2.0
log = logging.getLogger("trainport.executors.local")


# -- the server ------------------------------------------------------------------------------


def serve(requests: socket.socket, exits: int) -> None:
    """Fork a shim per request until the executor's end closes; report each shim reaped."""
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # the wake-up fd does the work
    own = (requests.fileno(), exits, wake_read, wake_write)
    while True:
        ready, _, _ = select.select([requests.fileno(), wake_read], [], [])
        if wake_read in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_read, 512):
                    pass
        if not _report_exits(exits):
            return  # the executor is gone
        if requests.fileno() in ready and not _answer(requests, own):
            return


def _answer(requests: socket.socket, own: tuple[int, ...]) -> bool:
    data, fds, _, _ = socket.recv_fds(requests, MAX_MESSAGE, MAX_FDS)
    if not data:
        return False
    try:
        pid = _fork_shim(json.loads(data), fds, own)
        reply: dict[str, Any] = {"pid": pid}
    except Exception as exc:  # a bad request or no fork: the executor starts the shim itself
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        for fd in fds:
            os.close(fd)
    requests.send(json.dumps(reply).encode())
    return True


def _report_exits(exits: int) -> bool:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return True
        try:
            os.write(exits, f"{pid}\n".encode())
        except BrokenPipeError:
            return False


def _fork_shim(request: dict[str, Any], fds: list[int], own: tuple[int, ...]) -> int:
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        pid = os.fork()
        if pid == 0:  # the shim: never returns
            _become_shim(request, fds, own, log_fd)
        return pid
    finally:
        os.close(log_fd)


def _become_shim(
    request: dict[str, Any], fds: list[int], own: tuple[int, ...], log_fd: int
) -> None:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in own:
            os.close(fd)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        _place(fds, [int(n) for n in request["fds"]])
        code = local_shim.run_rank(Path(request["config"]), dict(request["environment"]))
    except BaseException:  # whatever it is, it goes to the shim's log
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _place(fds: list[int], targets: list[int]) -> None:
    """Move received descriptors to the numbers the shim's config names (as `pass_fds` kept
    them), through numbers above every one involved so no move overwrites another."""
    floor = max([*fds, *targets, 2]) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, floor) for fd in fds]
    for fd in fds:
        os.close(fd)
    for source, target in zip(moved, targets, strict=True):
        os.dup2(source, target)  # inheritable, as pass_fds left them
        os.close(source)


def main(argv: list[str]) -> int:
    requests = socket.socket(fileno=int(argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker's Ctrl-C is the worker's
    serve(requests, int(argv[2]))
    return 0


# -- the executor's side ----------------------------------------------------------------------


class ForkServer:
    """This process's fork server, started on first use and again after it died.

    `spawn` returns the shim's pid, or None when the server cannot fork it (then the caller
    starts the shim alone: `start_alone`). A spawn the server may have forked before it failed
    to answer is harmless to start again: the second shim loses the rank's exclusive claim and
    exits.
    """

    def __init__(self, on_exit: Callable[[], None] | None = None) -> None:
        self.on_exit = on_exit
        self._lock = threading.Lock()
        self._requests: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = 0  # the pid that started it: a forked worker starts its own

    def spawn(
        self, config: Path, log_path: Path, environment: dict[str, str], fds: list[int]
    ) -> int | None:
        request = {"config": str(config), "log": str(log_path), "environment": environment}
        data = json.dumps(request | {"fds": fds}).encode()
        with self._lock:
            try:
                requests = self._started()
                socket.send_fds(requests, [data], fds)
                reply = json.loads(requests.recv(MAX_MESSAGE) or b'{"error": "server gone"}')
            except (OSError, ValueError) as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            if "pid" in reply:
                return int(reply["pid"])
            log.warning("the fork server did not start a shim (%s); starting it alone",
                        reply["error"])  # fmt: skip
            self._stop()
            return None

    def _started(self) -> socket.socket:
        if self._requests is not None and self._owner == os.getpid():
            assert self._process is not None
            if self._process.poll() is None:
                return self._requests
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        exits_read, exits_write = os.pipe()
        try:  # in a session of its own: the worker's signals are not its
            fds = [theirs.fileno(), exits_write]
            self._process = _our_module(__name__, [str(fd) for fd in fds], fds)
        finally:
            theirs.close()
            os.close(exits_write)
        ours.settimeout(REPLY_SECONDS)
        self._requests, self._owner = ours, os.getpid()
        threading.Thread(target=self._watch, args=(exits_read,), daemon=True).start()
        return ours

    def _watch(self, exits: int) -> None:
        with os.fdopen(exits, "rb") as reaped:
            for _ in reaped:  # a shim ended: settle it and admit the next run
                if self.on_exit is not None:
                    self.on_exit()

    def _stop(self) -> None:
        if self._requests is not None:
            self._requests.close()  # the server sees its end close and exits
        if self._process is not None and self._owner == os.getpid():
            try:
                self._process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:  # stuck: its shims are in sessions of their own
                self._process.kill()
                self._process.wait()
        self._requests = self._process = None


def start_alone(
    config: Path, log_path: Path, environment: dict[str, str], fds: list[int]
) -> subprocess.Popen[bytes]:
    """The shim as an interpreter of its own, where the server cannot fork it: the same clean
    environment, with the rank's on a descriptor (`local_shim.read_environment`)."""
    rank_environment = local_shim.memory_file(json.dumps(environment).encode())
    try:
        with log_path.open("ab") as output:
            arguments = [str(config), str(rank_environment)]
            return _our_module(local_shim.__name__, arguments, [*fds, rank_environment], output)
    finally:
        os.close(rank_environment)


def _our_module(
    module: str, args: list[str], fds: list[int], output: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """`python -S -m module ARGS` in a session of its own (it outlives the worker; its session
    id is its pid), with a clean environment and `fds` passed at their numbers. -S: no
    site-packages; our modules need only the standard library and core.logs, and skipping
    `site` starts them sooner."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-S", "-m", module, *args],
        cwd=PROJECT_ROOT,  # so `-m` finds our package even when it is not installed
        env=clean_environment(),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        start_new_session=True,
        pass_fds=fds,
    )


def clean_environment() -> dict[str, str]:
    """What the shim's interpreter runs with: none of a run's variables, none of the worker's
    settings; only what locating programs and decoding text need."""
    keep = {"PATH", "LANG", "LANGUAGE", "TZ"}
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith("LC_")}


if __name__ == "__main__":
    sys.exit(main(sys.argv))

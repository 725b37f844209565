"""The per-rank shim of the local executor: `python -m workers.executors.local_shim <rank.json> FD`.

The executor starts one shim per rank in its own session, so the shim outlives a worker restart.
The shim first claims the rank by creating its pid file exclusively (a hard link, so the file
appears complete or not at all); a second shim for the same rank, or a rank already claimed by
`cancel`, finds the file and exits without running anything. Then it runs the command in a
process group of its own, copies its stdout/stderr line by line into the log store, and at
the end closes the log and writes the exit record atomically — in that
order, so whoever sees the exit record also sees the complete log.

SIGTERM to the shim (the executor's cancel) is forwarded to the command's process group.
Standard library plus core.logs only: this runs on every launch and must start fast (most
ranks are forked from the executor's fork server, local_forkserver.py, which has it loaded).

The rank's environment (the run's `env` among it) is the command's alone. The shim runs with
a clean one of its own and reads the rank's as JSON from descriptor FD (`read_environment`);
a sandboxed command gets it from bwrap's `--setenv`s, read from a descriptor too (`--args`),
while nsenter and bwrap themselves run with none. Outside the sandbox, the run's
`PYTHONPATH` or `LD_PRELOAD` would run the run's own code with the worker's privileges.

A sandboxed rank (`sandbox`: the bwrap prefix from local_sandbox.py) runs as `bwrap ... --
COMMAND`, still in that one process group. Two things differ. bwrap's outer process has no
SIGTERM handler and takes the sandbox down with it (--die-with-parent), so SIGTERM goes to
every other process of the group — once the command exists, as killpg would — and the command
keeps its grace period; SIGKILL still goes to the whole group. And bwrap reports a command
killed by signal N as exit code 128+N, which is read back as that signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.logs import MAX_LINE_BYTES, LogStore, LogWriter, Record

# `typing` only for the annotations: with `dataclasses` it was most of the shim's import time
# (issue 17). mypy reads a TYPE_CHECKING of our own as it reads typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

READER_JOIN_SECONDS = 5.0
# The run's secret values (JSON list) for the log writer to redact; the shim removes it from its
# environment before the command starts, so the command never sees the list.
REDACT_VARIABLE = "TRAINPORT_SHIM_REDACT"
SANDBOX_START_SECONDS = 10.0  # how long a stop request waits for the sandboxed command to exist
SANDBOX_POLL_SECONDS = 0.01
# In the sandbox prefix (local_sandbox.py), right after bwrap: `--args` and this, which the
# shim replaces with the descriptor it writes the command's `--setenv`s to.
ENVIRONMENT_FD = "{environment-fd}"


class RankConfig(Record):
    """What the executor writes for one rank; secrets travel in the environment, not here.

    A plain value class, not a dataclass: the shim must start fast (core/logs.py says why).
    """

    _fields = ("run_id", "attempt", "rank", "command", "workdir", "log_root", "pid_path",
               "exit_path", "sandbox", "forward")  # fmt: skip

    def __init__(
        self,
        run_id: str,
        attempt: int,
        rank: int,
        command: list[str],
        workdir: str,
        log_root: str,
        pid_path: str,
        exit_path: str,
        sandbox: list[str] | None = None,  # the bwrap prefix; None runs the command as it is
        # Listeners inside the attempt's network namespace, inherited from the executor, with
        # the endpoint each forwards to: [{"fd": 5, "host": "127.0.0.1", "port": 8000}].
        forward: list[dict[str, Any]] | None = None,
    ) -> None:
        self.run_id, self.attempt, self.rank, self.command = run_id, attempt, rank, command
        self.workdir, self.log_root, self.pid_path = workdir, log_root, pid_path
        self.exit_path, self.sandbox, self.forward = exit_path, sandbox, forward

    @classmethod
    def load(cls, path: Path) -> RankConfig:
        fields = json.loads(path.read_text())
        # Written by an older executor: the reconciler now enforces time limits, from the run
        # as it is now (core/runs/time_limits.py), so an edited max_duration applies.
        fields.pop("max_duration", None)
        fields.pop("grace_seconds", None)  # the executor's cancel times the grace period
        return cls(**fields)


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot): with the pid, an identity."""
    stat = read_proc_stat(pid)
    return int(stat[19]) if stat else None


def read_proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None if gone.

    Read with os calls, not pathlib: a scan of every process for a session's members (a rank's
    cleanup) was 3x slower through Path.read_text."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    try:
        raw = os.read(fd, 4096)
    except ProcessLookupError:  # exited between the open and the read
        return None
    finally:
        os.close(fd)
    end = raw.rfind(b")")  # the command name may hold ")" itself: the last one ends it
    return raw[end + 2 :].decode().split() if end != -1 else None


def write_atomically(path: Path, record: dict[str, Any], *, exclusive: bool) -> bool:
    """Write JSON so readers see all of it or nothing; `exclusive` refuses to replace a file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temp.write_text(json.dumps(record))
    try:
        if not exclusive:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        return True
    finally:
        temp.unlink(missing_ok=True)


class Shim:
    def __init__(
        self, config: RankConfig, environment: dict[str, str], redact: list[str] | None = None
    ) -> None:
        self.config = config
        self.environment = environment  # the command's, never the shim's own
        self.log: LogWriter = LogStore(Path(config.log_root)).writer(
            config.run_id, config.attempt, config.rank, redact or ()
        )
        self.child: subprocess.Popen[bytes] | None = None
        self.cancelled = False
        self.oom_kills_before = oom_kills()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._forward()
        try:
            self.child = self._start()
        except OSError as exc:
            self.log.write("system", f"cannot start {self.config.command[0]!r}: {exc}")
            return self._finish(127, None)
        self.log.write("system", f"started pid {self.child.pid}: {' '.join(self.config.command)}")
        if self.cancelled:  # the stop request arrived while the command was starting
            self._kill_group(signal.SIGTERM)
        readers = [
            self._reader(self.child.stdout, "stdout"),
            self._reader(self.child.stderr, "stderr"),
        ]
        returncode = self.child.wait()
        self._kill_group(signal.SIGKILL)  # leftovers of the command do not outlive it
        for reader in readers:
            reader.join(READER_JOIN_SECONDS)
        if returncode < 0:
            return self._finish(128 - returncode, -returncode)
        if self.config.sandbox and 128 < returncode <= 128 + 64:  # bwrap's "killed by signal"
            return self._finish(returncode, returncode - 128)
        return self._finish(returncode, None)

    def _forward(self) -> None:
        """Serve the rank's connections to the API for as long as this shim lives."""
        if not self.config.forward:
            return
        from workers.executors import local_forward  # only sandboxed ranks with a network

        for entry in self.config.forward:
            local_forward.serve(entry["fd"], entry["host"], entry["port"], self._note)

    def _note(self, message: str) -> None:
        self.log.write("system", message)

    def _start(self) -> subprocess.Popen[bytes]:
        if not self.config.sandbox:  # the worker's own user runs it: nothing to keep apart
            return self._popen(self.config.command, self.environment, ())
        settings = environment_file(self.environment)
        try:
            prefix = [str(settings) if a == ENVIRONMENT_FD else a for a in self.config.sandbox]
            return self._popen([*prefix, *self.config.command], {}, (settings,))
        finally:
            os.close(settings)

    def _popen(
        self, argv: list[str], env: dict[str, str], fds: tuple[int, ...]
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - the command is the user's, run as the user asked
            argv,
            cwd=self.config.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
            pass_fds=fds,
        )

    def _reader(self, pipe: IO[bytes] | None, stream: str) -> threading.Thread:
        def copy() -> None:
            assert pipe is not None
            for raw in iter(lambda: pipe.readline(MAX_LINE_BYTES), b""):
                self.log.write(stream, raw.decode(errors="replace"))

        thread = threading.Thread(target=copy, name=f"copy-{stream}", daemon=True)
        thread.start()
        return thread

    def _on_sigterm(self, _signum: int, _frame: object) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.log.write("system", "stop requested: sending SIGTERM")
        self._kill_group(signal.SIGTERM)

    def _kill_group(self, signum: signal.Signals) -> None:
        if self.child is None:
            return
        if self.config.sandbox and signum != signal.SIGKILL:
            self._signal_sandbox(self.child, signum)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
            os.killpg(self.child.pid, signum)

    def _signal_sandbox(self, child: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        """Signal the sandbox's processes but bwrap's outer one; if the command does not exist
        yet (bwrap still sets up), a thread delivers the signal as soon as it does."""
        if not _signal_group_but(child.pid, signum):
            threading.Thread(target=_signal_when_started, args=(child, signum), daemon=True).start()

    def _finish(self, exit_code: int, signum: int | None) -> int:
        reason, message = self._classify(exit_code, signum)
        self.log.write("system", message)
        self.log.close(finished=True)
        record = {"exit_code": exit_code, "signal": signum, "reason": reason, "message": message}
        write_atomically(Path(self.config.exit_path), record, exclusive=False)
        return 0

    def _classify(self, exit_code: int, signum: int | None) -> tuple[str | None, str]:
        """The reason recorded for the executor (a StatusReason value), and a message."""
        if self.cancelled:
            return "user_cancelled", f"stopped on request (exit code {exit_code})"
        if signum == signal.SIGKILL:
            return self._classify_kill()
        if signum is not None:
            return "exit_code_nonzero", f"killed by {signal.Signals(signum).name}"
        if exit_code != 0:
            return "exit_code_nonzero", f"exited with code {exit_code}"
        return None, "exited with code 0"

    def _classify_kill(self) -> tuple[str, str]:
        """Out of memory only when the kernel says so: the OOM killer counts its kills in the
        cgroup's `memory.events`. A SIGKILL from anyone else (a person, a supervisor) is not."""
        before, after = self.oom_kills_before, oom_kills()
        if before is not None and after is not None and after > before:
            return "oom_killed", "killed by the kernel's OOM killer (out of memory)"
        return "killed", "killed by SIGKILL (not by the kernel's OOM killer)"


def oom_kills(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """The OOM killer's kill count in this process's cgroup (v2 `memory.events`, v1
    `memory.oom_control`); None where neither can be read. The rank's command runs in the
    shim's cgroup, so a rise while it ran is the kernel's verdict on that cgroup. Inside a
    container the listed path may be the host's: the mount's own root is tried after it."""
    try:
        entries = [line.split(":", 2) for line in proc_cgroup.read_text().splitlines()]
    except OSError:
        return None
    for _, controllers, path in (entry for entry in entries if len(entry) == 3):
        if controllers == "":
            mounts, name = [root, root / "unified"], "memory.events"
        elif "memory" in controllers.split(","):
            mounts, name = [root / "memory"], "memory.oom_control"
        else:
            continue
        for mount in mounts:
            for folder in (mount / path.lstrip("/"), mount):
                found = _counter(folder / name)
                if found is not None:
                    return found
    return None


def _counter(path: Path, name: str = "oom_kill") -> int | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return None


def _signal_group_but(leader: int, signum: signal.Signals) -> bool:
    """Signal every process of group `leader` except the leader; False while the sandbox holds
    no more than bwrap's own two (the leader and its init, the PID namespace's pid 1)."""
    members = [pid for pid in group_members(leader) if pid != leader]
    if all(_parent(pid) == leader for pid in members):
        return False
    for pid in members:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # exited meanwhile
            os.kill(pid, signum)
    return True


def _signal_when_started(child: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    deadline = time.monotonic() + SANDBOX_START_SECONDS
    while child.poll() is None and time.monotonic() < deadline:
        if _signal_group_but(child.pid, signum):
            return
        time.sleep(SANDBOX_POLL_SECONDS)  # bounded poll: no event says "exec'd in a namespace"


def group_members(group: int) -> list[int]:
    """Live processes of process group `group`."""
    found = []
    for entry in os.listdir("/proc"):
        stat = read_proc_stat(int(entry)) if entry.isdigit() else None
        if stat and int(stat[2]) == group and stat[0] not in {"Z", "X"}:
            found.append(int(entry))
    return found


def _parent(pid: int) -> int | None:
    stat = read_proc_stat(pid)
    return int(stat[1]) if stat else None


def environment_file(environment: dict[str, str]) -> int:
    """A descriptor holding bwrap's `--setenv NAME VALUE` arguments for `environment`,
    NUL-separated as `--args` reads them."""
    pairs = [part for name, value in environment.items() for part in ("--setenv", name, value)]
    return memory_file(b"".join(f"{part}\0".encode() for part in pairs))


def memory_file(data: bytes) -> int:
    """A descriptor of an anonymous file holding `data`, at its start: a rank's environment
    handed to a process without a file on disk or a value on a command line."""
    fd = os.memfd_create("trainport-rank-environment")
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def read_environment(fd: int) -> dict[str, str]:
    """The rank's environment, as the executor wrote it to `fd` (JSON); closes `fd`."""
    with os.fdopen(fd, "rb") as source:
        found: dict[str, str] = json.loads(source.read())
    return found


def run_rank(config_path: Path, environment: dict[str, str]) -> int:
    """Claim the rank, then run it to its end (the shim's whole life, after start-up)."""
    config = RankConfig.load(config_path)
    redact = json.loads(environment.pop(REDACT_VARIABLE, "[]"))  # never reaches the command
    identity = {"pid": os.getpid(), "start_time": process_start_time(os.getpid())}
    if not write_atomically(Path(config.pid_path), identity, exclusive=True):
        return 0  # another shim, or a cancel, owns this rank: never run a second copy
    return Shim(config, environment, redact).run()


def main(argv: list[str]) -> int:
    # A shim an older executor started has the rank's environment as its own.
    environment = read_environment(int(argv[2])) if len(argv) > 2 else dict(os.environ)
    return run_rank(Path(argv[1]), environment)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

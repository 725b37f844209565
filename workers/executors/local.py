"""The local executor: runs an attempt's ranks as processes on this machine, one node.

Construct it as `LocalExecutor(state_dir, log_store, api_url, grace_seconds=10.0)`; from
settings that is `LocalExecutor(s.state_dir, LogStore(s.log_root), s.public_url,
s.cancel_grace_seconds)`.

Each rank runs under `workers.executors.local_shim`, in a session of its own so it outlives
the worker that launched it: forked by this process's fork server, which has the shim loaded
(local_forkserver.py), or, when that cannot, started as an interpreter of its own. The shim's
own environment is clean; the rank's (the run's `env` among it) is its command's alone. All
state lives in files (see `local_attempt`), so a new
executor instance (a restarted worker) re-adopts live ranks and reads finished ones.
`launch` is idempotent: it writes the plan once, under a lock, and starts a shim only for ranks
nobody has claimed; a redundant shim loses the exclusive claim and exits, so a rank's command
never runs twice. A recipe runs like any command (`python -m trainport.recipes.<name>` with
its parameters, core/runs/recipes.py). A launch that cannot start (a missing secret, more than
one node) does not raise: it records every rank as failed with reason `system_error` and says
why, in `observe()` and in the rank's log.

Each rank's environment: a few variables of the worker's own (PATH, HOME, locale; never its
TRAINPORT_* settings), the spec's `env` (`{secret: NAME}` values are those resolved for the
run's own org at launch, `LaunchRequest.secrets`; the shim redacts them from the log), the
request's TRAINPORT_* values, TRAINPORT_RUN_ID, TRAINPORT_ATTEMPT, TRAINPORT_API_URL,
TRAINPORT_CHECKPOINT_DIR and TRAINPORT_CACHE_DIR (both the run's own, shared by its attempts);
and, by the run's launcher (core/runs/launcher.py): `env` starts one process per rank with
RANK, LOCAL_RANK, WORLD_SIZE, NODE_RANK=0, NNODES=1, MASTER_ADDR=127.0.0.1 and MASTER_PORT (a
free port, recorded); `none` starts one process with none of them; `torchrun` starts one
`torchrun --no-python COMMAND` on that port, which gives its ranks their own.

With a `sandbox` (built from settings by the registry: `rank_sandbox`), each rank's command
runs under bubblewrap as its run's uid, seeing the system read-only and only its own folders
(local_sandbox.py; docs/security-sandbox.md); the shim stays outside. As root, each attempt
also gets a network namespace of its own (local_netns.py: made at launch, removed at cleanup,
found by name after a restart) into which every rank's shim forwards the API. Without a sandbox,
ranks run as the worker's user and see everything it sees.

Cancel sends SIGTERM to each shim, which forwards it to its command's process group; calls made
after `grace_seconds` SIGKILL every process left in the rank's session. It returns True once
none is left.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from core.code.fetch import unpack
from core.executor_kinds import ExecutorKind
from core.launch_request import LaunchRequest, resolve_command
from core.log_archive import LogArchive
from core.logs import LogKey, LogStore
from core.runs.launcher import Launcher, launcher_of, processes_started, torchrun_prefix
from core.runs.recipes import launch_command, recipe_environment
from core.runs.states import StatusReason
from workers.executors.base import AttemptObservation, Leftovers, RankObservation, RankPhase
from workers.executors.local_attempt import (
    AttemptFiles,
    attempt_files,
    session_members,
    shim_alive,
    signal_session,
)
from workers.executors.local_forkserver import ForkServer, start_alone
from workers.executors.local_logs import SpoolShipper
from workers.executors.local_netns import (
    Endpoint,
    NetworkUnavailable,
    endpoint,
    hosts_file,
    inside_url,
    listen_inside,
    namespace_name,
)
from workers.executors.local_netns import create as create_namespace
from workers.executors.local_netns import remove as remove_namespace
from workers.executors.local_sandbox import RankSandbox, sandbox_environment
from workers.executors.local_shim import REDACT_VARIABLE, write_atomically

SHIM_START_SECONDS = 30.0  # a claimed-by-nobody rank older than this is declared lost
CANCEL_SETTLE_SECONDS = 0.25  # how long cancel waits for processes to exit before answering
INHERITED_ENV = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
     "VIRTUAL_ENV", "PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES"}
)  # fmt: skip
log = logging.getLogger("trainport.executors.local")


class LaunchRefused(Exception):
    """The attempt cannot start as specified; recorded on its ranks, never raised to callers."""


Forwards = list[tuple[socket.socket, Endpoint]]  # listeners inside the attempt's namespace


class LocalExecutor:
    kind = ExecutorKind.LOCAL

    def __init__(
        self,
        state_dir: Path,
        log_store: LogStore,
        api_url: str,
        grace_seconds: float = 10.0,
        sandbox: RankSandbox | None = None,
        archive: LogArchive | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.sandbox = sandbox  # None: ranks run as the worker's user, seeing what it sees
        self.log_store = log_store
        # The database's logs, which the spool is shipped to; None keeps logs in the spool (a
        # test of the executor alone).
        self.shipper = None if archive is None else SpoolShipper(log_store, archive)
        self._log_root = Path(log_store.root).resolve()  # shims run from another directory
        self.api_url = api_url
        self.grace_seconds = grace_seconds
        self._children: list[subprocess.Popen[bytes]] = []
        # Called (from a thread of its own) when a shim this instance started exits, so the
        # worker can settle the attempt now instead of at its next periodic pass.
        self.on_shim_exit: Callable[[], object] | None = None
        self.forks = ForkServer(self._shim_exited)  # started on the first launch

    def _files(self, run_id: str, attempt: int) -> AttemptFiles:
        self.log_store.ref(run_id, attempt, 0)  # validates the id before it becomes a path
        return AttemptFiles(self.state_dir / "runs" / run_id, attempt)

    # -- launch -------------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> None:
        self._ship_logs()
        files = self._files(request.run_id, request.attempt)
        with files.locked():
            if files.tombstone.exists() or files.cancel_path.exists():
                log.warning("not launching %s/%d: cancelled or cleaned up", *_key(request))
                return
            plan = files.launch_record() or self._plan(files, request)
            unclaimed = [
                rank
                for rank in range(plan["world_size"])
                if not files.rank_file(rank, "pid").exists()
            ]
            if unclaimed:
                self._start_ranks(files, request, plan, unclaimed)

    def _start_ranks(
        self, files: AttemptFiles, request: LaunchRequest, plan: dict[str, Any], ranks: list[int]
    ) -> None:
        try:
            env = self._environment(files, request, plan)
        except LaunchRefused as refused:  # the worker lost a secret since the first launch
            log.warning("cannot restart ranks of %s/%d: %s", *_key(request), refused)
            return
        try:
            network, forwards = self._network(files, request, env)
        except NetworkUnavailable as failed:  # unclaimed ranks are declared lost, then retried
            log.warning("cannot start ranks of %s/%d: %s", *_key(request), failed)
            return
        try:
            sandbox = self._sandbox_prefix(files, request, env, network)
            for rank in ranks:
                rank_env = {**env, **_rank_env(rank, plan, launcher_of(request.spec))}
                self._spawn(files, request, rank, rank_env, sandbox, forwards)
        finally:
            for listener, _ in forwards:  # the shims hold their own copies
                listener.close()

    def _sandbox_prefix(
        self,
        files: AttemptFiles,
        request: LaunchRequest,
        env: dict[str, str],
        network: tuple[Path, Path] | None,
    ) -> list[str] | None:
        """The bwrap command line every rank of this attempt runs under (local_sandbox.py)."""
        if self.sandbox is None:
            return None
        uid = self.sandbox.uid_for(request.run_id)
        checkpoints = Path(env["TRAINPORT_CHECKPOINT_DIR"])
        writable = [files.workdir, checkpoints, files.cache, files.home]
        self.sandbox.give(writable, uid)
        datasets = _dataset_folders(env)
        self.sandbox.show(datasets)
        cwd = _working_dir(files.workdir, request.spec)
        return self.sandbox.argv(uid, writable, datasets, cwd, network)

    def _network(
        self, files: AttemptFiles, request: LaunchRequest, env: dict[str, str]
    ) -> tuple[tuple[Path, Path] | None, Forwards]:
        """The attempt's own network namespace, the ranks' hosts file, and listeners inside it
        for the API and the other forwarded endpoints (one per port); rewrites the API URL
        the ranks get where it gave an IP address (local_netns.py)."""
        if self.sandbox is None or self.sandbox.ip is None:
            return None, []
        name = namespace_name(request.run_id, request.attempt)
        namespace = create_namespace(self.sandbox.ip, name)
        by_port: dict[int, Endpoint] = {}
        for url in [env["TRAINPORT_API_URL"], *self.sandbox.forwarded]:
            by_port.setdefault(endpoint(url).port, endpoint(url))  # the API wins a shared port
        env["TRAINPORT_API_URL"] = inside_url(env["TRAINPORT_API_URL"])
        hosts = hosts_file(list(by_port.values()), files.folder / "hosts")
        listeners = listen_inside(namespace, list(by_port))
        return (namespace, hosts), list(zip(listeners, by_port.values(), strict=True))

    def _plan(self, files: AttemptFiles, request: LaunchRequest) -> dict[str, Any]:
        """Decide world size and port once; a refused launch is recorded as failed ranks."""
        plan = {
            "run_id": request.run_id,
            "attempt": request.attempt,
            "world_size": processes_started(request.spec),  # the processes this executor starts
            "master_port": _free_port(),
            "launched_at": time.time(),
        }
        for folder in (files.workdir, files.folder / "ranks", files.checkpoints):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            _check_launchable(request.spec)
            env = self._environment(files, request, plan)
            plan["checkpoint_dir"] = env["TRAINPORT_CHECKPOINT_DIR"]  # for `leftovers`
            _unpack_code(request, files.workdir)
        except LaunchRefused as refused:
            plan["refused"] = str(refused)
        write_atomically(files.launch_path, plan, exclusive=False)
        if plan.get("refused"):
            self._record_refusal(files, request, plan)
        return plan

    def _record_refusal(
        self, files: AttemptFiles, request: LaunchRequest, plan: dict[str, Any]
    ) -> None:
        message = f"launch refused: {plan['refused']}"
        for rank in range(plan["world_size"]):
            files.claim(rank, {"refused": True})
            record = {"exit_code": None, "reason": StatusReason.SYSTEM_ERROR.value}
            files.record_exit(rank, {**record, "message": message})
            writer = self.log_store.writer(request.run_id, request.attempt, rank)
            writer.write("system", message)
            writer.close(finished=True)

    def _environment(
        self, files: AttemptFiles, request: LaunchRequest, plan: dict[str, Any]
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in INHERITED_ENV or k.startswith("LC_")}
        env["PYTHONUNBUFFERED"] = "1"  # Python output reaches the log line by line
        env.update(_spec_env(request))
        env.update(recipe_environment(request.spec))
        env.update(request.env)
        env.setdefault("TRAINPORT_API_URL", self.api_url)
        env["TRAINPORT_RUN_ID"] = request.run_id
        env["TRAINPORT_ATTEMPT"] = str(request.attempt)
        env["TRAINPORT_CHECKPOINT_DIR"] = str(files.checkpoints)
        uri = env.get("TRAINPORT_CHECKPOINT_URI", "")
        if uri.startswith("file://"):  # the run's one location (docs/runtime-api.md), same folder
            env["TRAINPORT_CHECKPOINT_DIR"] = url2pathname(urlsplit(uri).path)
            Path(env["TRAINPORT_CHECKPOINT_DIR"]).mkdir(parents=True, exist_ok=True)
        # The run's own cache (its attempts share it), not one folder shared by every org.
        env["TRAINPORT_CACHE_DIR"] = str(files.cache)
        if self.sandbox is not None:
            env.update(sandbox_environment(files.home))
        return env

    def _spawn(
        self,
        files: AttemptFiles,
        request: LaunchRequest,
        rank: int,
        env: dict[str, str],
        sandbox: list[str] | None,
        forwards: Forwards,
    ) -> None:
        """Start the rank's shim: forked by the fork server, or (when it cannot) as a new
        interpreter. Either way the shim's own environment is clean and the rank's `env`
        travels beside it, for the command alone (local_shim.py says why)."""
        config_path = files.rank_file(rank, "json")
        fds = [listener.fileno() for listener, _ in forwards]
        forward = [{"fd": s.fileno(), "host": e.host, "port": e.port} for s, e in forwards]
        config = self._rank_config(files, request, rank) | {"sandbox": sandbox, "forward": forward}
        config_path.write_text(json.dumps(config))
        shim_log = files.rank_file(rank, "shim.log")
        if self.forks.spawn(config_path, shim_log, env, fds) is not None:
            return  # the fork server reaps it and reports its exit (_shim_exited)
        child = start_alone(config_path, shim_log, env, fds)
        self._children.append(child)
        if self.on_shim_exit is not None:
            threading.Thread(target=self._watch, args=(child,), daemon=True).start()

    def _watch(self, child: subprocess.Popen[bytes]) -> None:
        child.wait()
        self._shim_exited()

    def _shim_exited(self) -> None:
        if self.on_shim_exit is None:
            return
        try:
            self.on_shim_exit()
        except Exception:  # the periodic pass settles it instead; never kill the thread loudly
            log.exception("settling after a shim exited failed")

    def _rank_config(
        self, files: AttemptFiles, request: LaunchRequest, rank: int
    ) -> dict[str, Any]:
        # No time limits here: the reconciler enforces them from the run as it is now
        # (core/runs/time_limits.py), so an edited max_duration applies to the running attempt.
        cwd = _working_dir(files.workdir, request.spec)
        return {
            "run_id": request.run_id,
            "attempt": request.attempt,
            "rank": rank,
            "command": _command(request.spec, files, cwd),
            "workdir": str(cwd),
            "log_root": str(self._log_root),
            "pid_path": str(files.rank_file(rank, "pid")),
            "exit_path": str(files.rank_file(rank, "exit")),
        }

    # -- observe ------------------------------------------------------------------------------

    def observe(self) -> list[AttemptObservation]:
        self._ship_logs()  # a restarted worker ships what its ranks wrote meanwhile
        self._reap()
        host = socket.gethostname()
        found = []
        for files in attempt_files(self.state_dir):
            plan = files.launch_record()
            if plan is None:
                continue
            ranks = tuple(self._observe_rank(files, plan, r) for r in range(plan["world_size"]))
            found.append(AttemptObservation(plan["run_id"], files.attempt, ranks, where=host))
        return found

    def _observe_rank(
        self, files: AttemptFiles, plan: dict[str, Any], rank: int
    ) -> RankObservation:
        exit_record = files.exit_record(rank)
        if exit_record is not None:
            # The shim closed the log before it wrote the exit record: the whole log is stored
            # before the run can be seen to end.
            self._finish_log(plan["run_id"], files.attempt, rank)
            return _finished(rank, exit_record)
        identity = files.identity(rank)
        if identity is None:
            if time.time() - plan["launched_at"] < SHIM_START_SECONDS:
                return RankObservation(rank, RankPhase.PENDING)
            files.claim(rank, {"abandoned": True})  # a late shim must not start now
            identity = files.identity(rank)
        if identity is not None and "pid" in identity and shim_alive(identity):
            return RankObservation(rank, RankPhase.RUNNING)
        exit_record = files.exit_record(rank)  # it may have finished since the first look
        if exit_record is not None:
            self._finish_log(plan["run_id"], files.attempt, rank)
            return _finished(rank, exit_record)
        return self._lost(files, plan, rank, identity or {})

    def _lost(
        self, files: AttemptFiles, plan: dict[str, Any], rank: int, identity: dict[str, Any]
    ) -> RankObservation:
        if "pid" in identity:
            # Its command may still run, unobserved: stop it so a retry never runs beside it.
            signal_session(int(identity["pid"]), signal.SIGKILL)
            message = f"rank {rank}'s shim (pid {identity['pid']}) vanished without an exit record"
        else:
            message = f"rank {rank}'s shim never started"
        self._finish_log(plan["run_id"], files.attempt, rank)
        return RankObservation(rank, RankPhase.LOST, None, StatusReason.NODE_LOST, message)

    def _ship_logs(self) -> None:
        if self.shipper is not None:
            self.shipper.start()

    def _finish_log(self, run_id: str, attempt: int, rank: int) -> None:
        """No line will be added to this rank's log: store the rest and close it."""
        if self.shipper is None:
            self.log_store.mark_finished(run_id, attempt, rank)
        else:
            self.shipper.ship(LogKey(run_id, attempt, rank), finish=True)

    def _reap(self) -> None:
        """Collect our exited shims, so they do not linger as zombies."""
        self._children = [child for child in self._children if child.poll() is None]

    # -- cancel and cleanup -------------------------------------------------------------------

    def cancel(self, run_id: str, attempt: int, grace_seconds: float | None = None) -> bool:
        files = self._files(run_id, attempt)
        with files.locked():
            plan = files.launch_record()
            first_call = not files.cancel_path.exists()
            deadline = self._cancel_deadline(files, grace_seconds)
            if plan is None:
                return True  # never launched; the cancel marker keeps a late launch away
            sessions = self._stop_ranks(files, plan, first_call, time.time() >= deadline)
        return self._settle(files, plan, sessions)

    def _cancel_deadline(self, files: AttemptFiles, grace_seconds: float | None) -> float:
        files.folder.mkdir(parents=True, exist_ok=True)
        if not files.cancel_path.exists():
            grace = self.grace_seconds if grace_seconds is None else grace_seconds
            deadline = {"deadline": time.time() + grace}
            write_atomically(files.cancel_path, deadline, exclusive=False)
        return float(json.loads(files.cancel_path.read_text())["deadline"])

    def _stop_ranks(
        self, files: AttemptFiles, plan: dict[str, Any], first_call: bool, overdue: bool
    ) -> dict[int, int]:
        """Signal every rank's processes; the sessions still to watch, by rank."""
        sessions = {}
        for rank in range(plan["world_size"]):
            if files.claim(rank, {"cancelled": True}):
                continue  # claimed before its shim: it will never start
            identity = files.identity(rank) or {}
            if "pid" not in identity:
                continue
            pid = int(identity["pid"])
            if overdue:
                signal_session(pid, signal.SIGKILL)
            elif first_call and shim_alive(identity):
                os.kill(pid, signal.SIGTERM)  # the shim forwards it to its command's group
            elif first_call:
                signal_session(pid, signal.SIGTERM)  # an orphaned command, shim gone
            sessions[rank] = pid
        return sessions

    def _settle(self, files: AttemptFiles, plan: dict[str, Any], sessions: dict[int, int]) -> bool:
        """Wait briefly for the processes to go; record the ranks whose shim could not."""
        give_up = time.monotonic() + CANCEL_SETTLE_SECONDS
        while True:
            self._reap()
            alive = {rank for rank, pid in sessions.items() if session_members(pid)}
            if not alive or time.monotonic() >= give_up:
                break
            time.sleep(0.01)  # bounded poll: process exit has no portable event to wait on
        for rank in set(range(plan["world_size"])) - alive:
            if files.exit_record(rank) is None:
                record = {"exit_code": None, "reason": StatusReason.USER_CANCELLED.value}
                files.record_exit(rank, {**record, "message": "stopped on request"})
            # Stored whole before the run can be seen cancelled, its last words included.
            self._finish_log(plan["run_id"], files.attempt, rank)
        return not alive

    def cleanup(self, run_id: str, attempt: int) -> None:
        files = self._files(run_id, attempt)
        with files.locked():
            files.tombstone.touch()
            plan = files.launch_record()
            for rank in range(plan["world_size"] if plan else 0):
                identity = files.identity(rank) or {}
                if "pid" in identity:  # never leave a process running untracked
                    signal_session(int(identity["pid"]), signal.SIGKILL)
                self._finish_log(run_id, attempt, rank)  # no line will follow it
            shutil.rmtree(files.folder, ignore_errors=True)
            self._remove_network(run_id, attempt)

    def leftovers(self, run_id: str, attempt: int) -> Leftovers | None:
        """The attempt's working folder (deleted by `cleanup`) and checkpoint folder."""
        files = self._files(run_id, attempt)
        plan = files.launch_record()
        if plan is None or plan.get("refused") or not files.workdir.is_dir():
            return None
        checkpoints = Path(plan.get("checkpoint_dir") or files.checkpoints)
        return Leftovers(files.workdir, checkpoints)

    def _remove_network(self, run_id: str, attempt: int) -> None:
        """Delete the attempt's namespace, also one a worker with other settings made."""
        ip = (self.sandbox.ip if self.sandbox else None) or shutil.which("ip")
        if ip is None:
            return
        try:
            remove_namespace(ip, namespace_name(run_id, attempt))
        except NetworkUnavailable as failed:  # left behind, empty: say so for the operator
            log.warning("cannot remove the network of %s/%d: %s", run_id, attempt, failed)


def _key(request: LaunchRequest) -> tuple[str, int]:
    return request.run_id, request.attempt


def _command(spec: dict[str, Any], files: AttemptFiles, cwd: Path) -> list[str]:
    """The run's command (recipes run with the worker's interpreter, which has `trainport`
    installed; a relative program resolved in the working directory `cwd`), inside torchrun
    when that is the run's launcher."""
    command = resolve_command(launch_command(spec, sys.executable), str(cwd))
    if launcher_of(spec) is not Launcher.TORCHRUN:
        return command
    plan = files.launch_record() or {}
    master = ("127.0.0.1", str(plan.get("master_port", 29500)))
    return [*torchrun_prefix(spec, command, "0", master), *command]


def _check_launchable(spec: dict[str, Any]) -> None:
    nodes = int((spec.get("compute") or {}).get("nodes") or 1)
    if nodes != 1:
        raise LaunchRefused(f"the local executor runs on one node; this run asks for {nodes}")


def _spec_env(request: LaunchRequest) -> dict[str, str]:
    """The spec's `env`: `{secret: NAME}` from the values resolved for the run's own org at
    launch (LaunchRequest.secrets), never from the worker's environment; plus, for the shim
    only, the values its log writer must redact."""
    env = {}
    for name, value in (request.spec.get("env") or {}).items():
        if not isinstance(value, dict):
            env[name] = str(value)
        elif value["secret"] in request.secrets.values:
            env[name] = request.secrets.values[value["secret"]]
        else:  # the reconciler resolves every name first; this is a request built elsewhere
            raise LaunchRefused(
                f"env {name} needs secret {value['secret']!r}, which was not resolved for "
                "this launch"
            )
    if request.secrets.values:
        env[REDACT_VARIABLE] = json.dumps(sorted(request.secrets.values.values()))
    return env


def _unpack_code(request: LaunchRequest, workdir: Path) -> None:
    """The run's code snapshot, unpacked into the attempt's working folder (digest checked)."""
    code = request.code
    if code is None or code.chunks is None:
        return
    try:
        unpack(code.chunks(), code.digest, workdir)
    except Exception as failed:  # a refused archive, or the store: the attempt cannot start
        raise LaunchRefused(f"cannot unpack code snapshot {code.digest}: {failed}") from None
    cwd = _working_dir(workdir, request.spec)
    if not cwd.is_dir():
        raise LaunchRefused(
            f"working_dir {request.spec.get('working_dir')!r} is not a folder of the code"
        )


def _working_dir(workdir: Path, spec: dict[str, Any]) -> Path:
    """Where the command starts: `working_dir` inside the code, else the code's root."""
    inside = spec.get("working_dir")
    return workdir / inside if inside else workdir


def _dataset_folders(env: dict[str, str]) -> list[Path]:
    """The run's pinned datasets that are folders on this machine (`file://` URIs)."""
    pinned = json.loads(env.get("TRAINPORT_DATASETS") or "{}")
    uris = [entry["uri"] for entry in pinned.values()]
    return [Path(url2pathname(urlsplit(uri).path)) for uri in uris if uri.startswith("file://")]


def _rank_env(rank: int, plan: dict[str, Any], launcher: Launcher) -> dict[str, str]:
    """The distributed variables of launcher `env` (none for `none`; torchrun sets its own)."""
    if launcher is not Launcher.ENV:
        return {}
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(plan["world_size"]),
        "NODE_RANK": "0",
        "NNODES": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(plan["master_port"]),
    }


def _free_port() -> int:
    """A port free now; recorded in the plan so every rank (and a relaunch) agrees on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _finished(rank: int, record: dict[str, Any]) -> RankObservation:
    code = record.get("exit_code")
    if record.get("reason") is None and code == 0:
        return RankObservation(rank, RankPhase.SUCCEEDED, 0, None, record.get("message"))
    reason = StatusReason(record.get("reason") or StatusReason.EXIT_CODE_NONZERO.value)
    return RankObservation(rank, RankPhase.FAILED, code, reason, record.get("message"))

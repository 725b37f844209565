"""The executor interface every backend implements (local processes now, Kubernetes next).

An executor is told to launch (a `LaunchRequest`, core/launch_request.py) or cancel one attempt
of a run and reports what it sees as per-rank observations; `classify_attempt` turns those into
the attempt's outcome. Everything an executor creates is named deterministically from (run id,
attempt), so launching the same attempt twice adopts what exists instead of starting a second
copy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from core.executor_kinds import ExecutorKind
from core.launch_request import LaunchRequest
from core.runs.states import StatusReason


class RankPhase(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"  # the executor can no longer find it (process vanished, node gone)


@dataclass(frozen=True)
class RankObservation:
    rank: int
    phase: RankPhase
    exit_code: int | None = None
    reason: StatusReason | None = None
    message: str | None = None


@dataclass(frozen=True)
class AttemptObservation:
    run_id: str
    attempt: int
    ranks: tuple[RankObservation, ...]
    where: str = ""  # host or node names, for the attempt record
    image_digest: str = ""  # the image the cluster reports it ran (pod imageID), for provenance


class AttemptPhase(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the user's code failed: counts against max_retries
    SYSTEM_FAILED = "system_failed"  # the platform failed: retried when allowed


@dataclass(frozen=True)
class AttemptReport:
    phase: AttemptPhase
    reason: StatusReason
    message: str


@dataclass(frozen=True)
class Leftovers:
    """Where an ended attempt's files are on this machine, for the worker to harvest
    (workers/harvest.py) before the executor forgets them: the working directory its `outputs`
    globs resolve in, and the folder it was told is TRAINPORT_CHECKPOINT_DIR."""

    workdir: Path
    checkpoint_dir: Path


class Executor(Protocol):
    kind: ExecutorKind

    def launch(self, request: LaunchRequest) -> None:
        """Start the attempt, or adopt it if it already exists. Never starts a second copy."""

    def cancel(self, run_id: str, attempt: int, grace_seconds: float | None = None) -> bool:
        """Ask the attempt to stop; True once nothing of it is left running. Idempotent.

        `grace_seconds` (a preemption's checkpoint grace) replaces the executor's own SIGTERM
        to SIGKILL delay; the first call fixes it."""

    def observe(self) -> list[AttemptObservation]:
        """Every attempt this executor can see, live or finished but not yet cleaned up."""

    def cleanup(self, run_id: str, attempt: int) -> None:
        """Forget a finished attempt's bookkeeping (its logs stay). Idempotent."""

    def leftovers(self, run_id: str, attempt: int) -> Leftovers | None:
        """The ended attempt's files on this machine; None where the attempt harvests itself
        (a pod uploads its own, through the run storage API) or nothing is left."""


_SYSTEM_REASONS = {
    StatusReason.EVICTED,
    StatusReason.NODE_LOST,
    StatusReason.PREEMPTED,
    StatusReason.DELETED_EXTERNALLY,
}


# What a command that never ran exits with, on both executors: 127 "not found" and 126 "not
# executable" (POSIX shells, the local shim when exec fails), and the container runtime's own
# start failures (Kubernetes). The user's to fix, never cured by a retry (NEVER_RETRIED).
CANNOT_START_EXIT_CODES = frozenset({126, 127})
CANNOT_START_RUNTIME_REASONS = frozenset({"StartError", "ContainerCannotRun"})


def cannot_start(rank: RankObservation) -> RankObservation:
    """`rank`, with reason COMMAND_CANNOT_START when its exit code says the command never ran."""
    if rank.reason not in {None, StatusReason.EXIT_CODE_NONZERO}:
        return rank
    if rank.exit_code not in CANNOT_START_EXIT_CODES:
        return rank
    message = f"rank {rank.rank}: the command cannot start (exit code {rank.exit_code}: "
    message += "not found" if rank.exit_code == 127 else "not executable"
    message += "); check `command` and the image"
    return replace(rank, reason=StatusReason.COMMAND_CANNOT_START, message=message)


def classify_attempt(ranks: tuple[RankObservation, ...]) -> AttemptReport:
    """One failing rank fails the gang; all ranks succeeded means success; lost is the system's."""
    failed = [cannot_start(r) for r in ranks if r.phase is RankPhase.FAILED]
    lost = [r for r in ranks if r.phase is RankPhase.LOST]
    if failed:
        first = min(failed, key=lambda r: r.rank)
        reason = first.reason or StatusReason.EXIT_CODE_NONZERO
        phase = AttemptPhase.SYSTEM_FAILED if reason in _SYSTEM_REASONS else AttemptPhase.FAILED
        message = first.message or f"rank {first.rank} exited with code {first.exit_code}"
        return AttemptReport(phase, reason, message)
    if lost:
        first = min(lost, key=lambda r: r.rank)
        message = first.message or f"rank {first.rank} was lost"
        return AttemptReport(
            AttemptPhase.SYSTEM_FAILED, first.reason or StatusReason.NODE_LOST, message
        )
    if ranks and all(r.phase is RankPhase.SUCCEEDED for r in ranks):
        return AttemptReport(AttemptPhase.SUCCEEDED, StatusReason.COMPLETED, "all ranks succeeded")
    if ranks and all(r.phase in {RankPhase.RUNNING, RankPhase.SUCCEEDED} for r in ranks):
        return AttemptReport(AttemptPhase.RUNNING, StatusReason.RUNNING, "all ranks running")
    return AttemptReport(AttemptPhase.STARTING, StatusReason.LAUNCHING, "waiting for ranks")

"""The executor interface every backend implements (local processes now, Kubernetes next).

An executor is told to launch or cancel one attempt of a run and reports what it sees as
per-rank observations; `classify_attempt` turns those into the attempt's outcome. Everything an
executor creates is named deterministically from (run id, attempt), so launching the same
attempt twice adopts what exists instead of starting a second copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from core.runs.states import StatusReason
from core.secrets.schemas import LaunchSecrets


class RankPhase(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"  # the executor can no longer find it (process vanished, node gone)


@dataclass(frozen=True)
class LaunchRequest:
    """Everything needed to start one attempt; `env` holds the platform's TRAINPORT_* values.

    `secrets` holds the values the spec's `{secret: NAME}` entries name, resolved for the run's
    own org at launch (core/secrets/service.py); they never leave the worker's memory except
    into the run's own environment (local) or its org's Kubernetes Secret.
    """

    run_id: str
    org_id: str
    attempt: int
    spec: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    project_id: str = ""  # for the executor's labels; empty where unknown
    secrets: LaunchSecrets = field(default_factory=LaunchSecrets)
    # The nodes the scheduler placed a GPU gang on (the attempt's `placement`): Kubernetes pins
    # the pods there, so the gang lands where the node-shaped fit was found. Empty: anywhere.
    nodes: tuple[str, ...] = ()


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
class AttemptOutcome:
    phase: AttemptPhase
    reason: StatusReason
    message: str


class Executor(Protocol):
    kind: str

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


_SYSTEM_REASONS = {
    StatusReason.EVICTED,
    StatusReason.NODE_LOST,
    StatusReason.PREEMPTED,
    StatusReason.DELETED_EXTERNALLY,
}


def classify_attempt(ranks: tuple[RankObservation, ...]) -> AttemptOutcome:
    """One failing rank fails the gang; all ranks succeeded means success; lost is the system's."""
    failed = [r for r in ranks if r.phase is RankPhase.FAILED]
    lost = [r for r in ranks if r.phase is RankPhase.LOST]
    if failed:
        first = min(failed, key=lambda r: r.rank)
        reason = first.reason or StatusReason.EXIT_CODE_NONZERO
        phase = AttemptPhase.SYSTEM_FAILED if reason in _SYSTEM_REASONS else AttemptPhase.FAILED
        message = first.message or f"rank {first.rank} exited with code {first.exit_code}"
        return AttemptOutcome(phase, reason, message)
    if lost:
        first = min(lost, key=lambda r: r.rank)
        message = first.message or f"rank {first.rank} was lost"
        return AttemptOutcome(
            AttemptPhase.SYSTEM_FAILED, first.reason or StatusReason.NODE_LOST, message
        )
    if ranks and all(r.phase is RankPhase.SUCCEEDED for r in ranks):
        return AttemptOutcome(AttemptPhase.SUCCEEDED, StatusReason.COMPLETED, "all ranks succeeded")
    if ranks and all(r.phase in {RankPhase.RUNNING, RankPhase.SUCCEEDED} for r in ranks):
        return AttemptOutcome(AttemptPhase.RUNNING, StatusReason.RUNNING, "all ranks running")
    return AttemptOutcome(AttemptPhase.STARTING, StatusReason.LAUNCHING, "waiting for ranks")

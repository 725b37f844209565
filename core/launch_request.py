"""What an executor is told to start: one attempt of a run (`LaunchRequest`), the code snapshot
it runs (`CodeToRun`), and how a relative command resolves in its working directory.

Plain data, below every executor: the worker's reconciler builds a request in the launch
transaction (core/launch.py mints its environment), the executors in workers/executors/ start
it, and core/kubernetes/manifests.py renders it as the objects a cluster receives, for the
Kubernetes executor and for `POST /v1/runs/plan` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from core.secrets.schemas import LaunchSecrets


@dataclass(frozen=True)
class CodeToRun:
    """The code snapshot an attempt runs (its digest, checked when unpacked), where inside it
    the command starts, and how this worker reads the snapshot's bytes from the store."""

    digest: str
    working_dir: str | None = None
    chunks: Callable[[], Iterator[bytes]] | None = field(default=None, repr=False)


def resolve_command(command: list[str], cwd: str) -> list[str]:
    """A relative `command[0]` (`./train.sh`, `scripts/run.sh`) names a file of the working
    directory, on every executor; a bare name (`python`) is looked up on PATH as always."""
    first = command[0]
    if "/" in first and not first.startswith("/"):
        return [f"{cwd.rstrip('/')}/{first.removeprefix('./')}", *command[1:]]
    return command


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
    code: CodeToRun | None = None  # the run's `workdir` or `git` source, as a snapshot
    # The nodes the scheduler placed a GPU gang on (the attempt's `placement`): Kubernetes pins
    # the pods there, so the gang lands where the node-shaped fit was found. Empty: anywhere.
    nodes: tuple[str, ...] = ()

"""How a run's command is started on each node, and which distributed variables it sees.

One rule, used by the spec's validation and by both executors:

| launcher   | the platform starts, per node           | distributed variables it sets          |
|------------|------------------------------------------|----------------------------------------|
| `none`     | the command, once                        | none                                   |
| `torchrun` | `torchrun ... --no-python COMMAND`, once | none itself; torchrun gives each rank   |
|            |                                          | RANK, LOCAL_RANK, WORLD_SIZE, MASTER_* |
| `env`      | the command, once per rank (local) or   | RANK, LOCAL_RANK, WORLD_SIZE,           |
|            | once per pod (Kubernetes)                | MASTER_ADDR, MASTER_PORT, NODE_RANK... |

The default is `none` for one process on one node (a script that sees `RANK` often takes it
as "launched by torchrun" and tries to join a process group) and `env` otherwise, which is what
every run got before launchers existed, so existing multi-rank specs behave as they did.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

DISTRIBUTED_VARIABLES = (
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NNODES",
    "NPROC_PER_NODE",
)  # fmt: skip


class Launcher(StrEnum):
    NONE = "none"
    TORCHRUN = "torchrun"
    ENV = "env"


def nodes(spec: dict[str, Any]) -> int:
    return int((spec.get("compute") or {}).get("nodes") or 1)


def ranks_per_node(spec: dict[str, Any]) -> int:
    """Training processes per node: `compute.processes`, else one per GPU, at least one."""
    compute = spec.get("compute") or {}
    return int(compute.get("processes") or compute.get("gpus_per_node") or 1)


def launcher_of(spec: dict[str, Any]) -> Launcher:
    """The spec's launcher, or the default for its shape (see the module docstring)."""
    named = spec.get("launcher")
    if named:
        return Launcher(named)
    single = nodes(spec) == 1 and ranks_per_node(spec) == 1
    return Launcher.NONE if single else Launcher.ENV


def check_launcher(spec: dict[str, Any]) -> None:
    """`none` starts one process on one node: anything more needs `torchrun` or `env`."""
    if spec.get("launcher") != Launcher.NONE:
        return
    processes = (spec.get("compute") or {}).get("processes")
    if nodes(spec) != 1 or (processes or 1) != 1:
        raise ValueError(
            "launcher `none` starts one process on one node; for more ranks use "
            "`launcher: torchrun` (the platform runs torchrun) or `launcher: env` (your "
            "script starts its own processes from RANK, WORLD_SIZE, ...)"
        )


def processes_started(spec: dict[str, Any]) -> int:
    """Processes the platform itself starts on each node."""
    return ranks_per_node(spec) if launcher_of(spec) is Launcher.ENV else 1


def torchrun_prefix(
    spec: dict[str, Any], command: list[str], node_rank: str, master: tuple[str, str]
) -> list[str]:
    """`torchrun` around `command` (exec'd as is: `--no-python`). A command run by a Python
    interpreter gets torchrun from that interpreter (`-m torch.distributed.run`), so the ranks
    use the torch installed beside the script; any other command uses `torchrun` on PATH."""
    head = command[0]
    runner = (
        [head, "-m", "torch.distributed.run"]
        if PurePosixPath(head).name.startswith("python")
        else ["torchrun"]
    )
    return [
        *runner,
        f"--nnodes={nodes(spec)}",
        f"--nproc-per-node={ranks_per_node(spec)}",
        f"--node-rank={node_rank}",
        f"--master-addr={master[0]}",
        f"--master-port={master[1]}",
        "--no-python",
    ]

"""The pod a run's launcher renders (issue 14): `none`, `torchrun` and `env` on Kubernetes."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.k8s.test_manifests import SUPPORTED_VERSIONS, documents

DISTRIBUTED = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"}
DISTRIBUTED |= {"NNODES", "NPROC_PER_NODE"}


def container(spec: dict[str, Any]) -> dict[str, Any]:
    job, _ = documents({"image": "ghcr.io/acme/train:1", **spec})
    for version in (SUPPORTED_VERSIONS[0], SUPPORTED_VERSIONS[-1]):
        kubernetes_validate.validate(job, version, strict=True)
    found: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return found


def env_names(spec: dict[str, Any]) -> set[str]:
    return {variable["name"] for variable in container(spec)["env"]}


def test_one_process_on_one_node_gets_no_distributed_variable_by_default() -> None:
    assert env_names({"command": ["python", "train.py"]}) & DISTRIBUTED == set()
    assert container({"command": ["python", "train.py"]})["command"] == ["python", "train.py"]


def test_torchrun_wraps_the_command_with_the_gang_from_the_pod() -> None:
    spec = {
        "command": ["python", "train.py", "--lr=$1"],
        "launcher": "torchrun",
        "compute": {"nodes": 2, "gpus_per_node": 8},
    }
    assert container(spec)["command"] == [
        "python", "-m", "torch.distributed.run",
        "--nnodes=2", "--nproc-per-node=8", "--node-rank=$(NODE_RANK)",
        "--master-addr=$(MASTER_ADDR)", "--master-port=$(MASTER_PORT)", "--no-python",
        "python", "train.py", "--lr=$$1",
    ]  # fmt: skip
    # What torchrun's arguments name, and nothing it sets for its ranks itself.
    assert env_names(spec) & DISTRIBUTED == {
        "NODE_RANK", "NNODES", "NPROC_PER_NODE", "MASTER_ADDR", "MASTER_PORT",
    }  # fmt: skip


def test_a_command_that_is_not_python_gets_torchrun_from_the_path() -> None:
    spec = {"command": ["./train.sh"], "launcher": "torchrun", "compute": {"processes": 2}}
    assert container(spec)["command"][:2] == ["torchrun", "--nnodes=1"]


@pytest.mark.parametrize("spec", [{"compute": {"nodes": 2}}, {"launcher": "env"}])
def test_env_keeps_the_variables_a_multi_process_script_reads(spec: dict[str, Any]) -> None:
    names = env_names({"command": ["python", "train.py"], **spec})
    assert names & DISTRIBUTED == DISTRIBUTED - {"RANK", "LOCAL_RANK"}  # one pod per node

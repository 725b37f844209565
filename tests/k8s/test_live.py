"""Against a real cluster (`k8s_live`): skipped unless KUBECONFIG is set. See the README's
"Run on Kubernetes" section. The namespace comes from TRAINPORT_KUBERNETES_NAMESPACE.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k

from core.kubernetes.config import cluster_config
from core.kubernetes.manifests import build_attempt, build_org_secret
from core.secrets.schemas import LaunchSecrets
from core.settings import Settings
from tests.factories import log_archive
from tests.k8s.strict_dry_run import dropped_fields, dry_run_attempt, strict_options
from tests.support.kubernetes import launch_request, stored_log
from workers.executors.base import AttemptPhase, classify_attempt
from workers.executors.kubernetes.client import apis_from_settings, read_json
from workers.executors.kubernetes.executor import KubernetesExecutor

pytestmark = [
    pytest.mark.k8s_live,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs KUBECONFIG"),
]
TORCH_IMAGE = os.environ.get(
    "TRAINPORT_LIVE_TORCH_IMAGE", "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime"
)
GLOO = (
    "import torch.distributed as d; d.init_process_group('gloo');"
    "import torch; t = torch.ones(1); d.all_reduce(t); assert t.item() == d.get_world_size();"
    "print('all_reduce ok', d.get_rank())"
)


def test_every_manifest_passes_a_strict_server_side_dry_run() -> None:
    """Strict: a field the server would drop fails (fieldValidation=Strict where the server
    knows it, and on every server a comparison of what it would keep: strict_dry_run.py)."""
    settings = Settings()
    apis = apis_from_settings(settings)
    config = cluster_config(settings)
    request = launch_request(nodes=2, image=TORCH_IMAGE, compute={"nodes": 2, "gpus_per_node": 1})
    built = build_attempt(request, config)
    assert dry_run_attempt(apis, built) == []
    secret = build_org_secret(_with_secret(request), config, built.namespace)
    kept = read_json(
        apis.core.create_namespaced_secret, built.namespace, secret, **strict_options(apis)
    )
    assert dropped_fields(secret, kept) == []


def _with_secret(request: Any, value: str = "live-canary-value") -> Any:
    """The request as the reconciler hands it over: env TOKEN names secret `token`, resolved."""
    spec = {**request.spec, "env": {"TOKEN": {"secret": "token"}}}
    secrets = LaunchSecrets({"token": value}, {"token": "org.token"})
    return dataclasses.replace(request, spec=spec, secrets=secrets)


def test_a_pod_reads_its_orgs_secret_and_its_log_is_stored_redacted(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = Settings()
    executor = KubernetesExecutor(
        apis_from_settings(settings), cluster_config(settings), log_archive(sqlite_url),
        tmp_path / "state",
    )  # fmt: skip
    command = ["sh", "-c", 'echo "token is $TOKEN"']
    request = _with_secret(launch_request(nodes=1, image=TORCH_IMAGE, command=command))
    executor.launch(request)
    try:
        deadline = time.monotonic() + 300
        phase = AttemptPhase.STARTING
        while time.monotonic() < deadline and phase in {
            AttemptPhase.STARTING,
            AttemptPhase.RUNNING,
        }:
            found = [o for o in executor.observe() if o.run_id == request.run_id]
            phase = classify_attempt(found[0].ranks).phase if found else phase
            executor.pods.wait_for(lambda: False, 2.0)
        assert phase is AttemptPhase.SUCCEEDED
    finally:
        executor.cleanup(request.run_id, request.attempt)
        executor.stop()
    log = stored_log(executor, request.run_id, 1, 0)
    assert "token is ***" in log
    assert "live-canary-value" not in log


def test_a_two_node_gloo_torchrun_succeeds(tmp_path: Path, sqlite_url: str) -> None:
    settings = Settings()
    executor = KubernetesExecutor(
        apis_from_settings(settings), cluster_config(settings), log_archive(sqlite_url),
        tmp_path / "state",
    )  # fmt: skip
    command = ["sh", "-c", "torchrun --nnodes=$NNODES --nproc-per-node=1 --node-rank=$NODE_RANK "
               "--master-addr=$MASTER_ADDR --master-port=$MASTER_PORT /tmp/gloo.py"]  # fmt: skip
    command[2] = f'printf %s "{GLOO}" > /tmp/gloo.py && ' + command[2]
    request = launch_request(nodes=2, image=TORCH_IMAGE, command=command)
    executor.launch(request)
    try:
        deadline = time.monotonic() + 600
        phase = AttemptPhase.STARTING
        while time.monotonic() < deadline and phase in {
            AttemptPhase.STARTING,
            AttemptPhase.RUNNING,
        }:
            found = [o for o in executor.observe() if o.run_id == request.run_id]
            phase = classify_attempt(found[0].ranks).phase if found else phase
            executor.pods.wait_for(lambda: False, 2.0)
        assert phase is AttemptPhase.SUCCEEDED
    finally:
        executor.cleanup(request.run_id, request.attempt)
        executor.stop()
    assert "all_reduce ok" in stored_log(executor, request.run_id, 1, 0)


def test_the_client_reaches_the_cluster() -> None:
    assert apis_from_settings(Settings()).core.get_api_resources() is not None
    assert isinstance(k.VersionApi, type)

"""`POST /v1/runs/plan` on a real kube-apiserver (issue 20): the plan's Job and Service are
exactly what the executor applies for the same run (but for the values only a launch knows),
and the server accepts them, with the worker's identity, in a server-side dry run."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from core.kubernetes.manifests import build_attempt
from core.launch_request import LaunchRequest
from core.scheduling.preflight import PLANNED_ID
from core.scheduling.preflight_manifests import MINTED_AT_LAUNCH
from tests.factories import create_run
from tests.k8s.strict_dry_run import dry_run
from tests.k8s_real.harness import CLUSTER, IMAGE, NAMESPACE, Real
from workers.executors.kubernetes.client import Apis
from workers.executors.kubernetes.executor import KubernetesExecutor

pytestmark = pytest.mark.k8s_real
# What a 1.20 server drops from a Job (fields of later versions, and the TTL of finished Jobs,
# an alpha feature gate there), and nothing else: every other field is kept as sent.
DROPPED_BY_1_20 = [
    "Job: spec.completionMode",
    "Job: spec.podFailurePolicy",
    "Job: spec.podReplacementPolicy",
    "Job: spec.ttlSecondsAfterFinished",
]
SPEC: dict[str, Any] = {
    "name": "planned",
    "image": IMAGE,
    "command": ["python", "-c", "print('$HOME')"],
    "env": {"PLAIN": "a$(b)"},
    "labels": {"team": "nlp"},
    "compute": {"nodes": 1, "cpus": "1", "memory": "256Mi"},
}


class Recording:
    """The real executor, keeping each request the reconciler hands it."""

    def __init__(self, inner: KubernetesExecutor) -> None:
        self.inner = inner
        self.requests: list[LaunchRequest] = []

    def launch(self, request: LaunchRequest) -> None:
        self.requests.append(request)
        self.inner.launch(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def as_planned(request: LaunchRequest) -> LaunchRequest:
    """`request` with what only the launch knows as the plan shows it: the stand-in id, the
    placeholder token."""
    env = {name: value.replace(request.run_id, PLANNED_ID) for name, value in request.env.items()}
    env["TRAINPORT_RUN_TOKEN"] = MINTED_AT_LAUNCH
    return replace(request, run_id=PLANNED_ID, env=env)


def test_the_plan_shows_what_the_executor_applies_and_the_server_accepts_it(real: Real) -> None:
    real.step()  # the worker registers its cluster
    response = real.api.post("/v1/runs/plan", json=SPEC, headers=real.tenant.headers)
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["placement"]["cluster"] == CLUSTER
    job, service = plan["manifests"]

    worker = Apis.from_client(real.plane.control.client(real.plane.worker_token), 5, 5)
    assert dry_run(worker, NAMESPACE, [job, service]) == DROPPED_BY_1_20

    recording = Recording(real.executor)
    real.executor = recording  # type: ignore[assignment]
    run_id = create_run(real.api, real.tenant, **SPEC)["id"]
    real.kubelet.fate(run_id, exit_code=None)
    real.drive(run_id, {"running"})
    [request] = recording.requests
    assert request.spec == plan["spec"]
    built = build_attempt(as_planned(request), recording.inner.config)
    assert [built.job, built.service] == [job, service]
    real.kubelet.end(run_id, 0)
    real.drive(run_id, {"succeeded"})

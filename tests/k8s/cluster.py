"""A cluster simulator that plays the Job controller, the scheduler and the kubelet — only
through the fake API server's HTTP endpoints, never by touching its memory.

Tests give each rank a fate (`succeed`, `run`, `oom`, `fail`, `image_pull`, `unschedulable`,
`evict`, `pending`: waits for a node without a word) and call `step()`: each step moves every
pod one stage along (Pending → scheduled and Running → its fate), then the Job controller
reacts (fails a Job past its `activeDeadlineSeconds`, counted from the Job's start as the real
controller does, pending time included; creates missing pods, fails the Job when a pod fails
outside the podFailurePolicy's Ignore rule, stopping the others; completes it when every index
succeeded), and the kubelet finishes graceful deletions. `advance(seconds)` moves the
simulator's clock (its controllers' "now"), never the server's.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.k8s.fake_api import FakeApiServer, now_text

Obj = dict[str, Any]
INDEX = "batch.kubernetes.io/job-completion-index"
JOBS = "/apis/batch/v1/namespaces/{ns}/jobs"
PODS = "/api/v1/namespaces/{ns}/pods"


class ClusterSimulator:
    def __init__(self, server: FakeApiServer, namespace: str = "trainport-runs") -> None:
        self.server = server
        self.ns = namespace
        self.http = httpx.Client(base_url=server.url, timeout=10)
        self.fates: dict[int, str] = {}
        self.offset = timedelta()  # added to the wall clock by advance()
        self.indexed = True  # False: a Job controller before Indexed Jobs (no index on pods)

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def add_node(self, name: str, gpus: int = 0, gpu_type: str = "", ready: bool = True,
                 cordoned: bool = False) -> None:  # fmt: skip
        labels = {"nvidia.com/gpu.product": gpu_type} if gpu_type else {}
        node = {
            "metadata": {"name": name, "labels": labels},
            "spec": {"unschedulable": cordoned},
            "status": {
                "allocatable": {"cpu": "8", "nvidia.com/gpu": str(gpus)},
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
        self.http.post("/api/v1/nodes", json=node).raise_for_status()

    # -- reading and writing through the API ----------------------------------------------------

    def jobs(self) -> list[Obj]:
        items: list[Obj] = self.http.get(JOBS.format(ns=self.ns)).json()["items"]
        return items

    def pods(self, job: Obj | None = None) -> list[Obj]:
        pods: list[Obj] = self.http.get(PODS.format(ns=self.ns)).json()["items"]
        if job is None:
            return pods
        return [p for p in pods if _owned_by(p, job)]

    def patch_pod(self, pod: Obj, status: Obj) -> None:
        url = f"{PODS.format(ns=self.ns)}/{pod['metadata']['name']}/status"
        self.http.patch(url, json={"status": status}).raise_for_status()

    def patch_job(self, job: Obj, status: Obj) -> None:
        url = f"{JOBS.format(ns=self.ns)}/{job['metadata']['name']}/status"
        self.http.patch(url, json={"status": status}).raise_for_status()

    def delete_pod(self, pod: Obj, grace: int | None = None) -> None:
        query = {} if grace is None else {"gracePeriodSeconds": grace}
        url = f"{PODS.format(ns=self.ns)}/{pod['metadata']['name']}"
        self.http.delete(url, params=query)

    # -- one round of every controller ----------------------------------------------------------

    def step(self, finish_deletions: bool = True) -> None:
        for job in self.jobs():
            if job["metadata"].get("deletionTimestamp") or _finished(job):
                continue
            pods = self.pods(job)
            for pod in pods:
                self._kubelet(pod)
            self._job_controller(job, self.pods(job))
        if not finish_deletions:  # leave marked pods for the test to look at
            return
        self.kill_deleted_pods()
        for pod in self.pods():
            if pod["metadata"].get("deletionTimestamp"):
                self.delete_pod(pod, grace=0)  # the kubelet stopped its containers

    def kill_deleted_pods(self) -> None:
        """The kubelet's part of a graceful deletion: SIGTERM, so a running container exits 143
        and its pod turns Failed while still marked for deletion, until it is removed."""
        for pod in self.pods():
            if pod["metadata"].get("deletionTimestamp") and pod["status"].get("phase") == "Running":
                terminated = {"exitCode": 143, "reason": "Error", "finishedAt": now_text()}
                status = {"phase": "Failed", "containerStatuses": [_terminated(terminated)]}
                self.patch_pod(pod, _with_image_id(pod, status))

    def _kubelet(self, pod: Obj) -> None:
        index = _index(pod)
        fate = self.fates.get(index, "succeed")
        phase = pod["status"].get("phase", "Pending")
        if pod["metadata"].get("deletionTimestamp") or phase in {"Succeeded", "Failed"}:
            return
        if phase == "Pending":
            return None if fate == "pending" else self._start(pod, index, fate)
        self.server.append_log(self.ns, pod["metadata"]["name"], f"rank {index} working")
        if fate in {"succeed", "oom", "fail", "evict"}:
            self.patch_pod(pod, _with_image_id(pod, _outcome(fate)))
        return None

    def _start(self, pod: Obj, index: int, fate: str) -> None:
        if fate == "unschedulable":
            message = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
            condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                         "message": message, "lastTransitionTime": now_text()}  # fmt: skip
            return self.patch_pod(pod, {"conditions": [condition]})
        if fate == "image_pull":
            waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "nope"'}
            status: Obj = {
                "containerStatuses": [{"name": "trainer", "state": {"waiting": waiting}}]
            }
            return self.patch_pod(pod, status)
        url = f"{PODS.format(ns=self.ns)}/{pod['metadata']['name']}"
        nodes = _allowed_nodes(pod)  # the scheduler honours a node-name affinity
        node = nodes[index % len(nodes)] if nodes else f"node-{index}"
        self.http.patch(url, json={"spec": {"nodeName": node}}).raise_for_status()
        self.server.append_log(self.ns, pod["metadata"]["name"], f"rank {index} starting")
        running = {"name": "trainer", "state": {"running": {"startedAt": now_text()}}}
        status = {"phase": "Running", "containerStatuses": [running]}
        return self.patch_pod(pod, _with_image_id(pod, status))

    def _job_controller(self, job: Obj, pods: list[Obj]) -> None:
        if self._past_deadline(job):
            return self.fail_job(job, "DeadlineExceeded", "Job was active longer than specified")
        by_index: dict[int, list[Obj]] = {}
        for pod in pods:
            by_index.setdefault(_index(pod), []).append(pod)
        failed = [p for p in pods if p["status"].get("phase") == "Failed" and not _disrupted(p)]
        if failed:
            return self.fail_job(job, "BackoffLimitExceeded", "Job has reached the backoff limit")
        completions = job["spec"]["completions"]
        if all(_succeeded(by_index.get(i, [])) for i in range(completions)):
            return self.patch_job(job, {"conditions": [_condition("Complete", "")]})
        for index in range(completions):
            live = [p for p in by_index.get(index, []) if p["status"].get("phase") != "Failed"]
            if not live:  # missing, or failed but ignored (a disruption): replace it
                self._create_pod(job, index)
        return None

    def _past_deadline(self, job: Obj) -> bool:
        deadline = job["spec"].get("activeDeadlineSeconds")
        started = datetime.fromisoformat(
            job["metadata"]["creationTimestamp"].replace("Z", "+00:00")
        )
        now = datetime.now(started.tzinfo) + self.offset
        return deadline is not None and (now - started).total_seconds() >= deadline

    def fail_job(self, job: Obj, reason: str, message: str) -> None:
        """The Job controller's reaction to a failure or an expired deadline: stop every pod."""
        self.patch_job(job, {"conditions": [_condition("Failed", reason, message)]})
        for pod in self.pods(job):
            if pod["status"].get("phase") in {"Pending", "Running"}:
                self.delete_pod(pod)

    def _create_pod(self, job: Obj, index: int) -> None:
        template = job["spec"]["template"]
        name = job["metadata"]["name"]
        meta = dict(template["metadata"])
        if self.indexed:
            meta["labels"] = {**meta.get("labels", {}), INDEX: str(index)}
            meta["annotations"] = {**meta.get("annotations", {}), INDEX: str(index)}
        meta["generateName"] = f"{name}-{index}-"
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                    "uid": job["metadata"]["uid"], "controller": True}]  # fmt: skip
        spec = {**template["spec"], "hostname": f"{name}-{index}"}
        self.http.post(PODS.format(ns=self.ns), json={"metadata": meta, "spec": spec})


def _allowed_nodes(pod: Obj) -> list[str]:
    affinity = (pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("operator") == "In":
                return list(field.get("values") or [])
    return []


def _index(pod: Obj) -> int:
    """The pod's completion index; a pod of a Job before Indexed Jobs has none (one pod: 0)."""
    return int((pod["metadata"].get("annotations") or {}).get(INDEX, 0))


def _outcome(fate: str) -> Obj:
    if fate == "succeed":
        terminated = {"exitCode": 0, "reason": "Completed"}
        return {"phase": "Succeeded", "containerStatuses": [_terminated(terminated)]}
    if fate == "oom":
        terminated = {"exitCode": 137, "reason": "OOMKilled"}
        return {"phase": "Failed", "containerStatuses": [_terminated(terminated)]}
    if fate == "fail":
        terminated = {"exitCode": 3, "reason": "Error"}
        return {"phase": "Failed", "containerStatuses": [_terminated(terminated)]}
    disruption = _condition("DisruptionTarget", "EvictionByEvictionAPI", "Eviction API: evicting")
    message = "The node was low on resource: memory."
    return {"phase": "Failed", "reason": "Evicted", "message": message, "conditions": [disruption]}


def image_id(image: str) -> str:
    """What a kubelet reports for an image it started: the repository and the pulled digest."""
    return f"{image.rsplit(':', 1)[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _with_image_id(pod: Obj, status: Obj) -> Obj:
    """The kubelet fills each started container's `imageID` (and keeps it once it ends)."""
    image = pod["spec"]["containers"][0]["image"]
    for container in status.get("containerStatuses") or []:
        container.update(image=image, imageID=image_id(image))
    return status


def _terminated(state: Obj) -> Obj:
    return {"name": "trainer", "state": {"terminated": state}}


def _condition(kind: str, reason: str, message: str = "") -> Obj:
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": now_text()}  # fmt: skip


def _owned_by(pod: Obj, job: Obj) -> bool:
    refs = pod["metadata"].get("ownerReferences") or []
    return any(ref.get("uid") == job["metadata"]["uid"] for ref in refs)


def _finished(job: Obj) -> bool:
    return any(c.get("status") == "True" for c in job.get("status", {}).get("conditions") or [])


def _succeeded(pods: list[Obj]) -> bool:
    return any(p["status"].get("phase") == "Succeeded" for p in pods)


def _disrupted(pod: Obj) -> bool:
    conditions = pod["status"].get("conditions") or []
    return any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conditions
    )

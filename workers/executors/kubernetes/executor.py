"""The Kubernetes executor: an attempt is an Indexed Job plus its headless Service.

`launch` first writes the run's resolved secret values into its org's Secret (one per org in the
training namespace), then creates both (the Service owned by the Job); a 409 reads the object
back and compares its spec-hash annotation: the same hash adopts it, a different one fails the
attempt with a clear reason instead of running something other than what was asked (a later
attempt has another name, so that one may retry). What the server kept decides, not what was
sent: a server without Indexed Jobs (before 1.22) silently drops `completionMode`, and a
multi-node run would then start every pod with an empty NODE_RANK, so its Job is deleted again
and the run refused (`spec_refused`, naming the cluster and its version).

`observe` reads two mirrors (Jobs and Pods, label-selected, list-then-watch) and maps them
through `observations`; it never polls pods one by one. `cancel` deletes the Job with
Foreground propagation (404 counts as done) and answers True only once no pod of the attempt
is left. `cleanup` copies the last of the logs, then deletes the Job. A launch that cannot be
built is recorded under the state folder and reported as failed ranks, like the local executor
does, with `spec_refused`: the same spec would be refused again, so the run is not retried.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from core.executor_kinds import ExecutorKind
from core.kubernetes import naming
from core.kubernetes.config import ClusterConfig
from core.kubernetes.manifests import (
    AttemptManifests,
    Manifest,
    ManifestRefused,
    build_attempt,
    build_org_secret,
    owned_by,
)
from core.launch_request import LaunchRequest
from core.log_archive import LogArchive
from core.runs.states import StatusReason
from core.scheduling.clusters import INDEXED_JOBS
from workers.executors.base import AttemptObservation, Leftovers, RankObservation, RankPhase
from workers.executors.kubernetes.client import Apis, read_json
from workers.executors.kubernetes.mirror import Mirror
from workers.executors.kubernetes.observations import AttemptView, group_attempts, observe_attempt
from workers.executors.kubernetes.podlogs import PodLogs

FOREGROUND = "Foreground"
CANCEL_WHY = "cancelled: its run is stopping, or no active run of this installation claims it"
log = logging.getLogger("trainport.executors.kubernetes")


class KubernetesExecutor:
    kind = ExecutorKind.KUBERNETES

    def __init__(
        self,
        apis: Apis,
        config: ClusterConfig,
        archive: LogArchive,
        state_dir: Path,
        *,
        unschedulable_seconds: float = 600.0,
        resync_seconds: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cluster_name: str = "",
    ) -> None:
        self.apis = apis
        self.config = config
        self.cluster_name = cluster_name  # for messages: which cluster refused what
        self.logs = PodLogs(apis, archive, clock)
        self._refused = Path(state_dir) / "kubernetes" / "refused"
        self._unschedulable_seconds = unschedulable_seconds
        self._clock = clock
        scope = None if "{org}" in config.namespace else config.namespace
        self.jobs = self._mirror(
            apis.batch.list_namespaced_job,
            apis.batch.list_job_for_all_namespaces,
            scope,
            resync_seconds,
        )
        self.pods = self._mirror(
            apis.core.list_namespaced_pod,
            apis.core.list_pod_for_all_namespaces,
            scope,
            resync_seconds,
        )
        self._started = False

    def _mirror(
        self,
        namespaced: Callable[..., Any],
        everywhere: Callable[..., Any],
        scope: str | None,
        resync: float,
    ) -> Mirror:
        return Mirror(
            namespaced if scope else everywhere,
            naming.managed_selector(self.config.installation),
            namespace=scope,
            watch_timeout=self.apis.watch_timeout,
            request_timeout=self.apis.request_timeout,
            resync_seconds=resync,
        )

    # -- launch -------------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> None:
        try:
            manifests = build_attempt(request, self.config)
        except ManifestRefused as refused:
            reason = StatusReason.SPEC_REFUSED  # the same spec would be refused again
            return self._refuse(request.run_id, request.attempt, request.spec, str(refused), reason)
        self._write_org_secret(request, manifests.namespace)
        job = self._create_or_adopt(manifests)
        if job is None or not self._kept_indexed(manifests, job, request):
            return None
        self._create_service(manifests, job, request)
        return None

    def _kept_indexed(
        self, manifests: AttemptManifests, job: Manifest, request: LaunchRequest
    ) -> bool:
        """Whether the server kept the Indexed completion mode a multi-node run needs (each
        pod's NODE_RANK is its completion index). If not, delete the Job and refuse the run."""
        nodes = int(manifests.job["spec"]["completions"])
        if nodes <= 1 or (job.get("spec") or {}).get("completionMode") == "Indexed":
            return True
        self._delete(manifests.namespace, manifests.name, "the server dropped its completionMode")
        needed = ".".join(map(str, INDEXED_JOBS))
        message = (
            f"cluster {self.cluster_name or '?'} (Kubernetes "
            f"{self.server_version() or 'version unknown'}) has no "
            "Indexed Jobs (it dropped the Job's completionMode); multi-node runs need "
            f"Kubernetes >= {needed}"
        )
        self._refuse(
            request.run_id, request.attempt, request.spec, message, StatusReason.SPEC_REFUSED
        )
        return False

    def server_version(self) -> str | None:
        """The cluster's gitVersion (`/version`); None, logged, when it cannot be read now."""
        try:
            return self.apis.server_version()
        except Exception as error:  # what asked goes on without it (a refusal, a registration)
            log.warning(
                "cannot read the server version of cluster %s: %s", self.cluster_name, error
            )
            return None

    def _write_org_secret(self, request: LaunchRequest, namespace: str) -> None:
        """Put the launch's resolved values into its org's Secret before any pod refers to it:
        created on the org's first launch, merged afterwards (new keys, rotated values, and the
        keys of secrets the org has deleted since removed)."""
        if not request.secrets.values:
            return
        secret = build_org_secret(request, self.config, namespace)
        core, timeout = self.apis.core, self.apis.request_timeout
        try:
            read_json(core.create_namespaced_secret, namespace, secret, _request_timeout=timeout)
            return
        except ApiException as error:
            if error.status != 409:
                raise
        name = str(secret["metadata"]["name"])
        data: dict[str, str | None] = dict(secret["data"])
        data.update(dict.fromkeys(self._deleted_keys(request, namespace, name)))  # null: remove
        patch = {"metadata": {"labels": secret["metadata"]["labels"]}, "data": data}
        core.patch_namespaced_secret(
            name,
            namespace,
            patch,
            _content_type="application/merge-patch+json",
            _request_timeout=timeout,
        )

    def _deleted_keys(self, request: LaunchRequest, namespace: str, name: str) -> set[str]:
        """Keys the org's Secret still holds for secrets deleted through the API."""
        live = request.secrets.live_keys
        if live is None:
            return set()
        existing = read_json(
            self.apis.core.read_namespaced_secret,
            name,
            namespace,
            _request_timeout=self.apis.request_timeout,
        )
        return set(existing.get("data") or {}) - live - set(request.secrets.keys.values())

    def _create_or_adopt(self, manifests: AttemptManifests) -> Manifest | None:
        """The attempt's Job as the server keeps it: created now, or made by an earlier launch
        of the same attempt (the same spec hash); None when another Job holds its name."""
        batch, timeout = self.apis.batch, self.apis.request_timeout
        try:
            return read_json(
                batch.create_namespaced_job,
                manifests.namespace,
                manifests.job,
                _request_timeout=timeout,
            )
        except ApiException as error:
            if error.status != 409:
                raise
        existing = read_json(
            batch.read_namespaced_job, manifests.name, manifests.namespace, _request_timeout=timeout
        )
        found = ((existing.get("metadata") or {}).get("annotations") or {}).get(
            naming.SPEC_HASH_KEY
        )
        if found == manifests.spec_hash:
            return existing
        message = (
            f"a different Job named {manifests.name} already exists in {manifests.namespace} "
            f"(spec hash {found or 'missing'}, expected {manifests.spec_hash}); not adopting it"
        )
        metadata = manifests.job["metadata"]
        run_id = str(metadata["annotations"][naming.RUN_ID_KEY])
        attempt = int(metadata["labels"][naming.ATTEMPT_KEY])
        nodes = int(manifests.job["spec"]["completions"])
        self._refuse(run_id, attempt, {"compute": {"nodes": nodes}}, message)  # system_error
        return None

    def _create_service(
        self, manifests: AttemptManifests, job: Manifest, request: LaunchRequest
    ) -> None:
        """The attempt's headless Service (rank 0's address), owned by its Job. A refusal
        (4xx) fails the attempt with the server's words: a run without its Service would never
        resolve MASTER_ADDR, and a redelivered launch would meet the same refusal."""
        service = owned_by(manifests.service, manifests.name, str(job["metadata"]["uid"]))
        try:
            read_json(
                self.apis.core.create_namespaced_service,
                manifests.namespace,
                service,
                _request_timeout=self.apis.request_timeout,
            )
        except ApiException as error:
            if error.status == 409:  # made by an earlier launch of this same attempt
                return
            if error.status is None or not 400 <= error.status < 500:
                raise  # the server's trouble, not a refusal: the launch is redelivered
            message = (
                f"the cluster refused the attempt's headless Service {manifests.name} in "
                f"{manifests.namespace} (HTTP {error.status}: {_server_message(error)})"
            )
            if "finalizers" in message:
                message += "; the worker's Role needs `update` on `jobs/finalizers` (k8s/rbac.yaml)"
            self._refuse(request.run_id, request.attempt, request.spec, message)

    def _refuse(
        self,
        run_id: str,
        attempt: int,
        spec: dict[str, Any],
        message: str,
        reason: StatusReason = StatusReason.SYSTEM_ERROR,
    ) -> None:
        log.warning("attempt %s/%d cannot run: %s", run_id, attempt, message)
        nodes = int((spec.get("compute") or {}).get("nodes") or 1)
        self._refused.mkdir(parents=True, exist_ok=True)
        record = {"run_id": run_id, "attempt": attempt, "nodes": nodes, "message": message}
        record["reason"] = reason.value
        (self._refused / f"{run_id}-{attempt}.json").write_text(json.dumps(record))

    # -- observe ------------------------------------------------------------------------------

    def start(self) -> None:
        """List, then watch in the background; a restarted worker rebuilds its view here."""
        if self._started:
            return
        self._started = True
        for mirror, name in ((self.jobs, "k8s-jobs"), (self.pods, "k8s-pods")):
            mirror.relist()
            mirror.start(name)

    def stop(self) -> None:
        for mirror in (self.jobs, self.pods):
            mirror.stop()
        self.logs.stop()

    def views(self) -> dict[tuple[str, int], AttemptView]:
        self.start()
        return group_attempts(self.jobs.objects(), self.pods.objects())

    def observe(self) -> list[AttemptObservation]:
        now = self._clock()
        found = {(r.run_id, r.attempt): r for r in self._refusals()}  # a refusal has the last word
        for key, view in self.views().items():
            found.setdefault(key, observe_attempt(view, now, self._unschedulable_seconds))
            for rank, pods in view.pods.items():
                for pod in pods:
                    self.logs.follow(view.run_id, view.attempt, rank, pod)
        return list(found.values())

    def _refusals(self) -> list[AttemptObservation]:
        found = []
        for path in sorted(self._refused.glob("*.json")) if self._refused.exists() else []:
            record = json.loads(path.read_text())
            reason = StatusReason(record.get("reason") or StatusReason.SYSTEM_ERROR.value)
            ranks = tuple(
                RankObservation(r, RankPhase.FAILED, None, reason, record["message"])
                for r in range(record["nodes"])
            )
            found.append(AttemptObservation(record["run_id"], record["attempt"], ranks))
        return found

    # -- cancel and cleanup -------------------------------------------------------------------

    def cancel(self, run_id: str, attempt: int, grace_seconds: float | None = None) -> bool:
        # The pods' own terminationGracePeriodSeconds is the grace on Kubernetes (the kubelet
        # sends SIGTERM, then SIGKILL when it runs out), so `grace_seconds` is not needed here.
        namespace = self._namespace_of(run_id, attempt)
        if namespace is None:
            return True
        self._delete(namespace, naming.attempt_name(run_id, attempt), CANCEL_WHY)
        # Followers keep copying a terminating pod's log; cleanup() drains what is left.
        return not self._pods_of(namespace, run_id, attempt)

    def leftovers(self, run_id: str, attempt: int) -> Leftovers | None:
        """Nothing on this machine: a pod's files are gone with it."""
        del run_id, attempt
        return None

    def cleanup(self, run_id: str, attempt: int) -> None:
        (self._refused / f"{run_id}-{attempt}.json").unlink(missing_ok=True)
        view = self.views().get((run_id, attempt))
        namespace = self._namespace_of(run_id, attempt)
        if view is not None:
            for rank, pods in view.pods.items():
                for pod in pods:
                    self.logs.drain(run_id, attempt, rank, pod)
        if namespace is not None:
            self._delete(namespace, naming.attempt_name(run_id, attempt), "the attempt is over")
        if view is not None:
            self.logs.forget([p for pods in view.pods.values() for p in pods])

    def _delete(self, namespace: str, name: str, why: str) -> None:
        """Delete one of this installation's Jobs (its pods and Service follow), saying why."""
        log.info("deleting Job %s in %s: %s", name, namespace, why)
        try:
            self.apis.batch.delete_namespaced_job(
                name,
                namespace,
                propagation_policy=FOREGROUND,
                _request_timeout=self.apis.request_timeout,
            )
        except ApiException as error:
            if error.status != 404:  # already gone: the delete is done
                raise

    def _namespace_of(self, run_id: str, attempt: int) -> str | None:
        view = self.views().get((run_id, attempt))
        if view is not None:
            return view.namespace
        if "{org}" not in self.config.namespace:
            return self.config.namespace
        return None  # neither Job nor pod of it exists anywhere we watch

    def _pods_of(self, namespace: str, run_id: str, attempt: int) -> list[dict[str, Any]]:
        labels = naming.selector_labels(run_id, attempt, self.config.installation)
        document = read_json(
            self.apis.core.list_namespaced_pod,
            namespace,
            label_selector=",".join(f"{key}={value}" for key, value in labels.items()),
            _request_timeout=self.apis.request_timeout,
        )
        items: list[dict[str, Any]] = document.get("items") or []
        return items


def _server_message(error: ApiException) -> str:
    """The Status message the server gave (it names what is missing), else its reason."""
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)

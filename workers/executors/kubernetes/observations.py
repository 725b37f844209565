"""What the cluster says about an attempt, as per-rank observations for `classify_attempt`.

Reads the API's JSON of the attempt's Job and pods (rank = completion index = node) and names
each failure: ImagePullBackOff and friends fail fast (`image_pull_failed`); a pod unschedulable
for longer than the limit fails (`unschedulable`, with the scheduler's message); OOMKilled names
its rank; eviction, preemption and a lost node are the platform's failures (retried, not counted
against the user's retries); the Job's DeadlineExceeded is `max_duration_exceeded`. Pods the Job
controller stops because another rank failed carry no evidence of their own (their exit 143
came from the deletion, read from the deletion mark before the Failed phase), so the rank that
failed first is the one the run reports. An unfinished Job deleted by someone else is
`deleted_externally`, the platform's failure.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.kubernetes import naming
from core.runs.states import StatusReason
from workers.executors.base import (
    CANNOT_START_RUNTIME_REASONS,
    AttemptObservation,
    RankObservation,
    RankPhase,
)

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
DISRUPTION_REASONS = {
    "PreemptionByScheduler": StatusReason.PREEMPTED,
    "DeletionByPodGC": StatusReason.NODE_LOST,
    "DeletionByTaintManager": StatusReason.NODE_LOST,
}
Obj = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class AttemptView:
    """One attempt's objects as the mirrors hold them."""

    run_id: str
    attempt: int
    namespace: str
    name: str
    job: Obj | None = None
    pods: dict[int, list[Obj]] = field(default_factory=lambda: defaultdict(list))

    @property
    def nodes(self) -> int:
        completions = ((self.job or {}).get("spec") or {}).get("completions")
        return int(completions or (max(self.pods) + 1 if self.pods else 1))


def group_attempts(jobs: list[Obj], pods: list[Obj]) -> dict[tuple[str, int], AttemptView]:
    """Jobs and pods by attempt. Which is which comes from the mirror each was read from: a
    list's items carry no `kind`, and older servers drop fields such as `completionMode`."""
    views: dict[tuple[str, int], AttemptView] = {}
    for is_job, obj in [*((True, job) for job in jobs), *((False, pod) for pod in pods)]:
        view = _view_of(views, obj)
        if view is None:
            continue
        if is_job:
            view.job = obj
        elif (index := completion_index(obj, view.job)) is not None:
            view.pods[index].append(obj)
    return views


def _view_of(views: dict[tuple[str, int], AttemptView], obj: Obj) -> AttemptView | None:
    meta = obj.get("metadata") or {}
    run_id = (meta.get("annotations") or {}).get(naming.RUN_ID_KEY)
    attempt = (meta.get("labels") or {}).get(naming.ATTEMPT_KEY, "")
    if not run_id or not attempt.isdigit():
        return None  # not ours, or edited by hand: never guess
    key = (run_id, int(attempt))
    if key not in views:  # the name once per attempt, not once per object (issue 17's scale)
        name = naming.attempt_name(run_id, int(attempt))
        views[key] = AttemptView(run_id, int(attempt), meta["namespace"], name)
    return views[key]


def completion_index(pod: Obj, job: Obj | None = None) -> int | None:
    """The pod's rank. A server without Indexed Jobs gives none; the only pod of its one-node
    Job is rank 0 (a multi-node one is refused at launch: executor._kept_indexed)."""
    meta = pod.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(naming.COMPLETION_INDEX_KEY) or (
        meta.get("labels") or {}
    ).get(naming.COMPLETION_INDEX_KEY)
    if raw is None and job is not None:
        spec = job.get("spec") or {}
        if spec.get("completionMode") != "Indexed" and int(spec.get("completions") or 1) == 1:
            return 0
    return int(raw) if raw is not None and str(raw).isdigit() else None


def observe_attempt(
    view: AttemptView, now: datetime, unschedulable_seconds: float
) -> AttemptObservation:
    picked = []
    for index in range(view.nodes):
        seen = [_pod_rank(index, p, now, unschedulable_seconds) for p in view.pods.get(index, [])]
        picked.append(_pick(index, seen, view.pods.get(index, [])))
    ranks = _apply_job(view, picked)
    nodes = sorted({n for pods in view.pods.values() for p in pods if (n := _node(p))})
    return AttemptObservation(
        view.run_id, view.attempt, tuple(ranks), where=",".join(nodes), image_digest=_image(view)
    )


def _image(view: AttemptView) -> str:
    """The digests the kubelets report for the run's container (`imageID`: the image as pulled,
    `repo@sha256:...`), sorted, comma-separated; empty until a container has started."""
    seen = {
        str(status["imageID"])
        for pods in view.pods.values()
        for pod in pods
        for status in (pod.get("status") or {}).get("containerStatuses") or []
        if status.get("imageID")
    }
    return ",".join(sorted(seen))


def _pick(index: int, seen: list[RankObservation], pods: list[Obj]) -> RankObservation | None:
    """A failure anywhere in the rank's history is kept; otherwise the newest pod speaks."""
    if not seen:
        return None
    failed = [r for r in seen if r.phase in {RankPhase.FAILED, RankPhase.LOST}]
    if failed:
        return failed[0]
    newest = max(range(len(pods)), key=lambda i: _created(pods[i]))
    return seen[newest]


def _apply_job(view: AttemptView, ranks: list[RankObservation | None]) -> list[RankObservation]:
    condition = _job_finished(view.job)
    own_failure = any(r is not None and r.phase is RankPhase.FAILED for r in ranks)
    if not own_failure and _deleted_externally(view, condition):
        return [_deleted_rank(view, index, rank) for index, rank in enumerate(ranks)]
    done = []
    for index, rank in enumerate(ranks):
        if condition == ("Complete", ""):
            rank = RankObservation(index, RankPhase.SUCCEEDED, 0)
        elif condition is not None and condition[1] == "DeadlineExceeded":
            if rank is None or rank.phase not in {RankPhase.SUCCEEDED}:
                message = "the run went past its max_duration and was stopped"
                rank = RankObservation(
                    index, RankPhase.FAILED, None, StatusReason.MAX_DURATION_EXCEEDED, message
                )
        elif condition is not None and rank is None and not own_failure:
            message = f"the Job failed ({condition[1]}) before rank {index} ran"
            rank = RankObservation(
                index, RankPhase.FAILED, None, StatusReason.SYSTEM_ERROR, message
            )
        done.append(rank or RankObservation(index, RankPhase.PENDING, message="no pod yet"))
    return done


def _deleted_externally(view: AttemptView, condition: tuple[str, str] | None) -> bool:
    """An unfinished Job that is being (or was) deleted: Trainport deletes an attempt's Job
    only once the run is stopping or settled, when nothing reads this view; so someone else
    did. Its pods are SIGTERMed (exit 143): the platform's failure, not the code's."""
    if condition is not None:
        return False  # finished first: a later delete (a TTL, a tidy-up) changes nothing
    if view.job is not None:
        return bool((view.job.get("metadata") or {}).get("deletionTimestamp"))
    return any(_deletion_requested(pod) for pods in view.pods.values() for pod in pods)


def _deleted_rank(view: AttemptView, index: int, rank: RankObservation | None) -> RankObservation:
    if rank is not None and rank.phase is RankPhase.SUCCEEDED:
        return rank
    message = (
        f"the Job {view.name} in {view.namespace} was deleted outside Trainport "
        f"while rank {index} had not finished"
    )
    return RankObservation(index, RankPhase.FAILED, None, StatusReason.DELETED_EXTERNALLY, message)


def _stopped_by_deletion(pod: Obj) -> bool:
    """A Failed pod whose container ended after its deletion was asked for (or whose end time
    is unknown) was stopped by that deletion; one that failed first keeps its own failure."""
    requested = _deletion_requested(pod)
    if requested is None:
        return False
    finished = _parse_time(_terminated(pod).get("finishedAt"))
    return finished is None or finished >= requested


def _deletion_requested(pod: Obj) -> datetime | None:
    """When the pod's deletion was asked for: its mark is the end of the grace period."""
    meta = pod.get("metadata") or {}
    mark = _parse_time(meta.get("deletionTimestamp"))
    if mark is None:
        return None
    return mark - timedelta(seconds=int(meta.get("deletionGracePeriodSeconds") or 0))


def _job_finished(job: Obj | None) -> tuple[str, str] | None:
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") in {"Complete", "Failed"} and condition.get("status") == "True":
            reason = "" if condition["type"] == "Complete" else str(condition.get("reason") or "")
            return str(condition["type"]), reason
    return None


def _pod_rank(index: int, pod: Obj, now: datetime, limit: float) -> RankObservation:
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Succeeded":
        return RankObservation(index, RankPhase.SUCCEEDED, 0)
    if phase == "Failed":
        if _stopped_by_deletion(pod) and not _disrupted(pod):  # a deletion's SIGTERM, not its own
            return RankObservation(index, RankPhase.RUNNING, message="stopping")
        return _failed(index, pod)
    if phase == "Unknown":
        message = f"rank {index}'s node {_node(pod) or '?'} stopped reporting"
        return RankObservation(index, RankPhase.LOST, None, StatusReason.NODE_LOST, message)
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return RankObservation(index, RankPhase.RUNNING, message="stopping")
    if phase == "Running":
        return RankObservation(index, RankPhase.RUNNING)
    return _pending(index, pod, now, limit)


def _disrupted(pod: Obj) -> bool:
    """Evicted, preempted or taken off a lost node: the cluster says why, keep its words."""
    evicted = (pod.get("status") or {}).get("reason") == "Evicted"
    return evicted or _condition(pod, "DisruptionTarget") is not None


SIGKILL_EXIT_CODE = 137  # 128 + 9: how a container runtime reports a SIGKILLed process


def _failed(index: int, pod: Obj) -> RankObservation:
    status = pod.get("status") or {}
    disruption = _condition(pod, "DisruptionTarget")
    if _disrupted(pod):
        why = str((disruption or {}).get("reason") or "Evicted")
        reason = DISRUPTION_REASONS.get(why, StatusReason.EVICTED)
        detail = status.get("message") or (disruption or {}).get("message") or why
        return RankObservation(index, RankPhase.FAILED, None, reason, f"rank {index}: {detail}")
    if status.get("reason") == "DeadlineExceeded":
        message = "the run went past its max_duration and was stopped"
        return RankObservation(
            index, RankPhase.FAILED, None, StatusReason.MAX_DURATION_EXCEEDED, message
        )
    terminated = _terminated(pod)
    code = terminated.get("exitCode")
    if terminated.get("reason") in CANNOT_START_RUNTIME_REASONS:
        detail = terminated.get("message") or terminated["reason"]
        message = f"rank {index}: the command cannot start: {detail}"
        return RankObservation(
            index, RankPhase.FAILED, code, StatusReason.COMMAND_CANNOT_START, message
        )
    if terminated.get("reason") == "OOMKilled":
        message = f"rank {index} ran out of memory (OOMKilled, exit code {code})"
        return RankObservation(index, RankPhase.FAILED, code, StatusReason.OOM_KILLED, message)
    if code == SIGKILL_EXIT_CODE:  # SIGKILL, but the kubelet did not see the OOM killer do it
        message = f"rank {index} was killed by SIGKILL (exit code {code}), not for memory"
        return RankObservation(index, RankPhase.FAILED, code, StatusReason.KILLED, message)
    message = f"rank {index} exited with code {code}"
    return RankObservation(index, RankPhase.FAILED, code, StatusReason.EXIT_CODE_NONZERO, message)


def _pending(index: int, pod: Obj, now: datetime, limit: float) -> RankObservation:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in IMAGE_PULL_REASONS or reason in CONFIG_REASONS:
            why = (
                StatusReason.IMAGE_PULL_FAILED
                if reason in IMAGE_PULL_REASONS
                else StatusReason.SYSTEM_ERROR
            )
            message = f"rank {index}: {reason}: {waiting.get('message') or ''}".rstrip(": ")
            return RankObservation(index, RankPhase.FAILED, None, why, message)
    scheduled = _condition(pod, "PodScheduled")
    if (
        scheduled
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    ):
        message = f"rank {index} cannot be scheduled: {scheduled.get('message') or ''}"
        since = _parse_time(scheduled.get("lastTransitionTime")) or _created(pod)
        if (now - since).total_seconds() >= limit:
            return RankObservation(
                index, RankPhase.FAILED, None, StatusReason.UNSCHEDULABLE, message
            )
        return RankObservation(index, RankPhase.PENDING, message=message)
    return RankObservation(index, RankPhase.PENDING)


def _condition(pod: Obj, kind: str) -> Obj | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and (
            kind != "DisruptionTarget" or condition.get("status") == "True"
        ):
            return dict(condition)
    return None


def _terminated(pod: Obj) -> Obj:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return {}


def _node(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _created(pod: Obj) -> datetime:
    stamp = _parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
    return stamp or EPOCH


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))

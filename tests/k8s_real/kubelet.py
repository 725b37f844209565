"""A kubelet stand-in for the real API server: it moves pods along and serves their logs.

There are no containers. With the admin identity, through the official client, one thread
watches the training namespace's pods and plays the scheduler and the kubelet: it adds the
completion-index annotation newer Job controllers add (1.20's does not), binds the pod to its
node (`pods/binding`), reports it Running, then ends it as the test decided (`Fate`: an exit
code, a reason such as OOMKilled, or keep running until `end()`). A pod marked for deletion (the
garbage collector, the Job controller, a cancel) is SIGTERMed: Failed with exit 143, then
removed. Nodes are real Node objects whose kubelet endpoint is this process's HTTPS log server,
so `pods/log` goes through the apiserver's proxy exactly as in a cluster; a node whose endpoint
nobody serves makes the apiserver answer `pods/log` with a 500, as an unreachable kubelet does.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client as k
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

from core.kubernetes import naming
from tests.k8s_real.control_plane import Pki, free_port
from workers.executors.kubernetes.client import call_raw, read_json

Obj = dict[str, Any]
INDEX = naming.COMPLETION_INDEX_KEY
GPU_TYPE = "NVIDIA-H100-80GB-HBM3"
MERGE = "application/merge-patch+json"
log = logging.getLogger("tests.kubelet")


@dataclass
class Fate:
    """What a run's pods do: run, then exit with `exit_code` (None: keep running)."""

    exit_code: int | None = 0
    reason: str = ""  # the container's terminated reason; derived from the code when empty
    node: str = "node-a"
    pending_seconds: float = 0.0  # unscheduled this long before it is bound and started
    lines: tuple[str, ...] = ("working",)


@dataclass
class PodLog:
    lines: list[tuple[str, str]] = field(default_factory=list)  # (RFC 3339 stamp, text)
    done: bool = False


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")  # nanoseconds, fixed width


class Kubelet:
    """Watches `namespace`'s pods (admin identity) and plays their node's kubelet."""

    def __init__(self, api: k.ApiClient, namespace: str, pki: Pki) -> None:
        self.core = k.CoreV1Api(api)
        self.ns = namespace
        self.default = Fate()
        self.fates: dict[str, Fate] = {}  # by run id, or "run_id/attempt"
        self.logs: dict[str, PodLog] = {}  # by pod name
        self.sigtermed: list[str] = []  # pods stopped because they were deleted
        self.deletion_seconds = 0.3  # how long a SIGTERMed container takes to go away
        self._lock = threading.RLock()
        self._logs_changed = threading.Condition()
        self._stage: dict[str, str] = {}  # pod uid -> what was done to it last
        self._indices: dict[str, int] = {}  # job uid -> next completion index
        self._removing: set[str] = set()  # pod uids whose removal is under way
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.port = free_port()
        self._server = _log_server(self, pki, self.port)

    # -- the test's controls --------------------------------------------------------------------

    def fate(self, run_id: str, attempt: int | None = None, **what: Any) -> None:
        key = run_id if attempt is None else f"{run_id}/{attempt}"
        self.fates[key] = Fate(**what)

    def end(self, run_id: str, exit_code: int = 0, reason: str = "") -> None:
        """End the run's running pods now (and any it starts later) with `exit_code`."""
        for key, fate in list(self.fates.items()):
            if key.split("/")[0] == run_id:
                self.fates[key] = Fate(exit_code, reason, fate.node, 0.0, fate.lines)
        self.fates.setdefault(run_id, Fate(exit_code, reason))
        for pod in self._pods():
            if _run_id(pod) == run_id:
                self.handle(pod)

    def add_node(self, name: str, reachable: bool = True, gpus: int = 8) -> None:
        port = self.port if reachable else free_port()  # nobody listens there: a dead kubelet
        labels = {"nvidia.com/gpu.product": GPU_TYPE}
        try:
            self.core.create_node(k.V1Node(metadata=k.V1ObjectMeta(name=name, labels=labels)))
        except ApiException as error:
            if error.status != 409:
                raise
        resources = {"cpu": "64", "memory": "512Gi", "pods": "2000", "nvidia.com/gpu": str(gpus)}
        status = {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": now_text(),
                    "lastTransitionTime": now_text(),
                }
            ],
        }
        self.core.patch_node_status(name, {"status": status}, _content_type=MERGE)

    # -- the loop -------------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(
            target=self._server.serve_forever, daemon=True, name="kubelet-logs"
        ).start()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kubelet")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        with self._logs_changed:
            self._logs_changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                version = self._list()
                self._watch(version)
            except Exception as error:  # an apiserver restart: list again once it is back
                if not self._stop.is_set():
                    log.info("kubelet stand-in: %s; listing again", error)
                    self._stop.wait(0.2)

    def _pods(self) -> list[Obj]:
        items: list[Obj] = read_json(self.core.list_namespaced_pod, self.ns)["items"]
        return items

    def _list(self) -> str:
        document = read_json(self.core.list_namespaced_pod, self.ns)
        for pod in document["items"]:
            self.handle(pod)
        return str(document["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> None:
        response = call_raw(
            self.core.list_namespaced_pod,
            self.ns,
            watch=True,
            resource_version=version,
            timeout_seconds=5,
            allow_watch_bookmarks=False,
        )
        try:
            for line in iter_resp_lines(response):
                if self._stop.is_set():
                    return
                event = json.loads(line) if line.strip() else {}
                if event.get("type") == "ERROR":
                    return  # 410 Gone and the like: list again
                if event.get("type") in {"ADDED", "MODIFIED"}:
                    self.handle(event["object"])
        finally:
            response.release_conn()

    # -- one pod --------------------------------------------------------------------------------

    def handle(self, pod: Obj) -> None:
        if _run_id(pod) is None:
            return
        with self._lock:
            try:
                self._advance(pod)
            except ApiException as error:
                if error.status not in {404, 409}:  # gone, or a step already taken: fine
                    raise

    def _advance(self, pod: Obj) -> None:
        meta, uid = pod["metadata"], pod["metadata"]["uid"]
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        stage = self._stage.get(uid, "")
        if meta.get("deletionTimestamp"):
            return self._terminate(pod, phase, stage)
        if phase in {"Succeeded", "Failed"} or stage == "done":
            return None
        fate = self._fate_of(pod)
        if not (pod.get("spec") or {}).get("nodeName") and stage in {"", "waited"}:
            return self._schedule(pod, fate)
        if stage == "bound" and phase == "Pending":
            return self._run_pod(pod)
        if stage in {"bound", "running"} and fate.exit_code is not None:
            return self._exit(pod, fate)
        return None

    def _schedule(self, pod: Obj, fate: Fate) -> None:
        uid = pod["metadata"]["uid"]
        if fate.pending_seconds and self._stage.get(uid) != "waited":
            self._stage[uid] = "waiting"
            timer = threading.Timer(fate.pending_seconds, self._after_wait, (pod,))
            timer.daemon = True
            timer.start()
            return
        name = pod["metadata"]["name"]
        if INDEX not in (pod["metadata"].get("annotations") or {}):
            patch = {"metadata": {"annotations": {INDEX: str(self._next_index(pod))}}}
            self.core.patch_namespaced_pod(name, self.ns, patch, _content_type=MERGE)
        binding = k.V1Binding(
            metadata=k.V1ObjectMeta(name=name),
            target=k.V1ObjectReference(api_version="v1", kind="Node", name=fate.node),
        )
        self._stage[uid] = "bound"
        self.core.create_namespaced_pod_binding(name, self.ns, binding, _preload_content=False)

    def _after_wait(self, pod: Obj) -> None:
        with self._lock:
            self._stage[pod["metadata"]["uid"]] = "waited"
        try:
            fresh = read_json(self.core.read_namespaced_pod, pod["metadata"]["name"], self.ns)
        except (ApiException, HTTPError):
            return  # gone, or the apiserver is restarting: its next list handles the pod
        self.handle(fresh)

    def _next_index(self, pod: Obj) -> int:
        owners: list[Obj] = pod["metadata"].get("ownerReferences") or []
        owner = owners[0].get("uid", "") if owners else ""
        index = self._indices.get(owner, 0)
        self._indices[owner] = index + 1
        return index

    def _run_pod(self, pod: Obj) -> None:
        self._stage[pod["metadata"]["uid"]] = "running"
        self._write(pod, "starting")
        running = {"running": {"startedAt": now_text()}}
        status = {
            "phase": "Running",
            "startTime": now_text(),
            "hostIP": "127.0.0.1",
            "containerStatuses": [_container(pod, running, ready=True)],
        }
        self._patch_status(pod, status)

    def _exit(self, pod: Obj, fate: Fate) -> None:
        self._stage[pod["metadata"]["uid"]] = "done"
        for line in fate.lines:
            self._write(pod, line)
        code = fate.exit_code or 0
        reason = fate.reason or ("Completed" if code == 0 else "Error")
        terminated = {
            "terminated": {
                "exitCode": code,
                "reason": reason,
                "startedAt": now_text(),
                "finishedAt": now_text(),
            }
        }
        phase = "Succeeded" if code == 0 else "Failed"
        self._patch_status(
            pod, {"phase": phase, "containerStatuses": [_container(pod, terminated)]}
        )
        self._finish_log(pod)

    def _terminate(self, pod: Obj, phase: str, stage: str) -> None:
        """A graceful deletion: SIGTERM (exit 143) if it runs, then remove it."""
        uid = pod["metadata"]["uid"]
        if uid in self._removing:
            return
        if stage != "deleting" and phase == "Running":
            self.sigtermed.append(pod["metadata"]["name"])
            terminated = {
                "terminated": {"exitCode": 143, "reason": "Error", "finishedAt": now_text()}
            }
            status = {"phase": "Failed", "containerStatuses": [_container(pod, terminated)]}
            self._patch_status(pod, status)
        self._stage[uid] = "deleting"
        self._removing.add(uid)
        self._finish_log(pod)
        timer = threading.Timer(self.deletion_seconds, self._remove, (pod,))
        timer.daemon = True
        timer.start()

    def _remove(self, pod: Obj) -> None:
        """Delete the pod now; the grace period goes in the body, which the server reads over
        the query (a body without it would keep the pod's 30 s)."""
        meta = pod["metadata"]
        options = k.V1DeleteOptions(
            grace_period_seconds=0, preconditions=k.V1Preconditions(uid=meta["uid"])
        )
        try:
            self.core.delete_namespaced_pod(meta["name"], self.ns, body=options)
        except ApiException as error:
            if error.status not in {404, 409}:  # gone already, or a newer pod of that name
                log.warning("kubelet stand-in could not remove %s: %s", meta["name"], error)
        except HTTPError as error:  # the apiserver is restarting: its next list retries
            log.info("kubelet stand-in could not remove %s: %s", meta["name"], error)
        finally:
            with self._lock:
                self._removing.discard(meta["uid"])

    def _patch_status(self, pod: Obj, status: Obj) -> None:
        self.core.patch_namespaced_pod_status(
            pod["metadata"]["name"], self.ns, {"status": status}, _content_type=MERGE
        )

    def _fate_of(self, pod: Obj) -> Fate:
        run_id = _run_id(pod) or ""
        attempt = (pod["metadata"].get("labels") or {}).get(naming.ATTEMPT_KEY, "")
        return self.fates.get(f"{run_id}/{attempt}") or self.fates.get(run_id) or self.default

    # -- logs -----------------------------------------------------------------------------------

    def _write(self, pod: Obj, text: str) -> None:
        with self._logs_changed:
            self.logs.setdefault(pod["metadata"]["name"], PodLog()).lines.append((_stamp(), text))
            self._logs_changed.notify_all()

    def _finish_log(self, pod: Obj) -> None:
        with self._logs_changed:
            self.logs.setdefault(pod["metadata"]["name"], PodLog()).done = True
            self._logs_changed.notify_all()

    def stream(self, pod: str, follow: bool, timestamps: bool, write: Any) -> None:
        """What GET /containerLogs/... answers: the lines so far, then new ones while following."""
        sent = 0
        deadline = time.monotonic() + 30
        while True:
            with self._logs_changed:
                entry = self.logs.setdefault(pod, PodLog())
                fresh, done = entry.lines[sent:], entry.done
            for stamp, text in fresh:
                write((f"{stamp} {text}\n" if timestamps else f"{text}\n").encode())
            sent += len(fresh)
            if not follow or done or self._stop.is_set() or time.monotonic() > deadline:
                return
            with self._logs_changed:
                self._logs_changed.wait(0.2)


def _container(pod: Obj, state: Obj, ready: bool = False) -> Obj:
    image = pod["spec"]["containers"][0]["image"]
    digest = f"{image.rsplit(':', 1)[0]}@sha256:{'0' * 64}"
    return {
        "name": pod["spec"]["containers"][0]["name"],
        "state": state,
        "ready": ready,
        "restartCount": 0,
        "image": image,
        "imageID": digest,
    }


def _run_id(pod: Obj) -> str | None:
    value = (pod["metadata"].get("annotations") or {}).get(naming.RUN_ID_KEY)
    return str(value) if value else None


def _log_server(kubelet: Kubelet, pki: Pki, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def do_GET(self) -> None:
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404)
                return
            query = parse_qs(url.query)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()

            def write(data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()

            follow = query.get("follow", ["false"])[0] == "true"
            timestamps = query.get("timestamps", ["false"])[0] == "true"
            kubelet.stream(parts[2], follow, timestamps, write)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    cert, key = pki.serving("kubelet")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server

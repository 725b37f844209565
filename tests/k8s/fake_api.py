"""A small Kubernetes API server for tests: JSON over HTTP on 127.0.0.1, in memory.

kmock 0.8 (by kopf's author) was tried with the official client and is not used: its pytest
plugin imports pytest_asyncio on load, and its KubernetesEmulator gives created objects no uid,
resourceVersion or creationTimestamp (the client then refuses the Job-owned Service's
ownerReference), ignores label selectors, `generateName` (a second pod with one prefix is a 409)
and watch `timeoutSeconds` (the stream never ends), never answers 410 Gone, and serves
`pods/log` as the pod itself. So this serves exactly what the executor depends on, and nothing
else: core/v1 and batch/v1 collections (namespaced and across namespaces), create (409 on a
taken name, `generateName`, `dryRun=All`), get (404), JSON merge PATCH (also `/status`), delete
(graceful for pods, Foreground/Background for owners), list and watch by label selector, pod
logs with `follow` and `timestamps`, and `/version`. Tests can drop every open watch, compact
history (so old versions answer 410), count requests, and make the server an older Kubernetes
(`pretend_version`): it then silently drops the Job fields that version does not know, as a
real one does.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]
GROUPS = {"api/v1": "v1", "apis/batch/v1": "batch/v1"}
KINDS = {
    "pods": "Pod", "services": "Service", "nodes": "Node", "events": "Event", "jobs": "Job",
    "secrets": "Secret",
}  # fmt: skip
# Job spec fields, by the minor version of Kubernetes 1.x from which a server keeps them (their
# feature gate on by default): an older server drops them from what it stores.
JOB_FIELDS_SINCE = {"completionMode": 22, "podFailurePolicy": 26, "podReplacementPolicy": 29}
_PATH = re.compile(
    r"^/(?P<group>api/v1|apis/batch/v1)(?:/namespaces/(?P<ns>[^/]+))?"
    r"/(?P<res>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>status|log))?$"
)


def now_text(later: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=later)).strftime("%Y-%m-%dT%H:%M:%SZ")


def matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality, inequality, set (`in`, `notin`) and existence requirements, comma-separated."""
    for part in _split_selector(selector):
        if m := re.fullmatch(r"\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*", part):
            values = {v.strip() for v in m.group(3).split(",")}
            if (labels.get(m.group(1)) in values) != (m.group(2) == "in"):
                return False
        elif "!=" in part:
            key, value = part.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in part:
            key, value = part.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif part.strip().startswith("!"):
            if part.strip()[1:] in labels:
                return False
        elif part.strip() and part.strip() not in labels:
            return False
    return True


def _split_selector(selector: str) -> list[str]:
    return re.findall(r"[^,(]+(?:\([^)]*\))?", selector or "")


class Store:
    """Objects, their history (for watches) and the garbage collector."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.history: list[tuple[int, str, str, Obj]] = []  # (rv, resource, type, object)
        self.version = 0
        self.floor = 0  # versions at or below this are compacted: watching from them is 410
        self.logs: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self.changed = threading.Condition()
        self.generation = 0  # bumped by drop_watches()
        self.requests: Counter[str] = Counter()
        self.log_faults: dict[str, int] = {}  # pod name prefix -> the status pods/log answers
        self.delete_faults: dict[str, int] = {}  # object name prefix -> the status DELETE answers
        self.git_version = "v1.31.2"
        self.enforce_owner_references = False  # the admission plugin, for a caller without
        # `update` on the owner's finalizers

    def _record(self, resource: str, kind: str, obj: Obj) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.history.append((self.version, resource, kind, json.loads(json.dumps(obj))))
        self.changed.notify_all()

    def create(self, resource: str, namespace: str, obj: Obj, dry_run: bool = False) -> Obj:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        key = (resource, namespace, meta["name"])
        self._admit_owner_references(resource, meta)
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{resource} "{meta["name"]}" already exists')
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_text())
        if namespace:
            meta["namespace"] = namespace
        obj.setdefault("apiVersion", GROUPS["apis/batch/v1" if resource == "jobs" else "api/v1"])
        obj.setdefault("kind", KINDS.get(resource, resource))
        obj.setdefault("status", {"phase": "Pending"} if resource == "pods" else {})
        if resource == "jobs":
            self._drop_unknown_job_fields(obj)
        if dry_run:  # what would be stored, and nothing stored
            return obj
        self.objects[key] = obj
        self._record(resource, "ADDED", obj)
        return obj

    def _drop_unknown_job_fields(self, job: Obj) -> None:
        minor = int(self.git_version.split(".")[1])
        for name, since in JOB_FIELDS_SINCE.items():
            if minor < since:
                (job.get("spec") or {}).pop(name, None)

    def version_document(self) -> Obj:
        major, minor = self.git_version.lstrip("v").split(".")[:2]
        return {"major": major, "minor": minor, "gitVersion": self.git_version}

    def _admit_owner_references(self, resource: str, meta: Obj) -> None:
        """OwnerReferencesPermissionEnforcement, as it answers a caller who may not update
        the owner's finalizers (a Role without `jobs/finalizers`)."""
        refs = meta.get("ownerReferences") or []
        if self.enforce_owner_references and any(r.get("blockOwnerDeletion") for r in refs):
            message = (
                f'{resource} "{meta["name"]}" is forbidden: cannot set blockOwnerDeletion if an '
                "ownerReference refers to a resource you can't set finalizers on: User "
                '"system:serviceaccount:trainport:trainport-worker" cannot update resource '
                '"jobs/finalizers" in API group "batch" in the namespace "trainport-runs"'
            )
            raise ApiError(403, "Forbidden", message)

    def get(self, resource: str, namespace: str, name: str) -> Obj:
        try:
            return self.objects[(resource, namespace, name)]
        except KeyError:
            raise ApiError(404, "NotFound", f'{resource} "{name}" not found') from None

    def patch(self, resource: str, namespace: str, name: str, patch: Obj) -> Obj:
        obj = self.get(resource, namespace, name)
        _merge(obj, patch)
        self._record(resource, "MODIFIED", obj)
        return obj

    def delete(self, resource: str, namespace: str, name: str, options: Obj) -> Obj:
        obj = self.get(resource, namespace, name)
        for prefix, code in self.delete_faults.items():
            if name.startswith(prefix):
                raise ApiError(code, "InternalError", "etcdserver: request timed out")
        meta = obj["metadata"]
        graceful = resource == "pods" and options.get("gracePeriodSeconds") != 0
        if meta.get("deletionTimestamp") and not (resource == "pods" and not graceful):
            return obj  # already going
        dependents = self._dependents(meta["uid"])
        if dependents and options.get("propagationPolicy") == "Foreground":
            meta.update(deletionTimestamp=now_text(), finalizers=["foregroundDeletion"])
            self._record(resource, "MODIFIED", obj)
        elif graceful and (obj.get("status") or {}).get("phase") in {"Pending", "Running"}:
            # As a real server: the mark is when the grace period ends, not when it was asked.
            grace = int(options.get("gracePeriodSeconds") or 30)
            meta.update(deletionTimestamp=now_text(grace), deletionGracePeriodSeconds=grace)
            self._record(resource, "MODIFIED", obj)
        else:
            self._remove(resource, namespace, name)
        for dep_resource, dep_ns, dep_name in dependents:
            if (dep_resource, dep_ns, dep_name) in self.objects:
                self.delete(dep_resource, dep_ns, dep_name, {})
        self._collect()
        return obj

    def _remove(self, resource: str, namespace: str, name: str) -> None:
        obj = self.objects.pop((resource, namespace, name))
        self._record(resource, "DELETED", obj)

    def _dependents(self, uid: str) -> list[tuple[str, str, str]]:
        return [
            key
            for key, obj in self.objects.items()
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
        ]

    def _collect(self) -> None:
        """Foreground deletion ends when the owner has no dependents left."""
        for key, obj in list(self.objects.items()):
            meta = obj["metadata"]
            if "foregroundDeletion" in (meta.get("finalizers") or []) and not self._dependents(
                meta["uid"]
            ):
                self._remove(*key)

    def select(self, resource: str, namespace: str | None, selector: str) -> list[Obj]:
        return [
            obj
            for (res, ns, _), obj in self.objects.items()
            if res == resource
            and (namespace is None or ns == namespace)
            and matches(selector, obj["metadata"].get("labels") or {})
        ]

    def compact(self) -> None:
        """Forget history up to now: a watch from an older version is answered 410 Gone."""
        with self.changed:
            self.floor = self.version
            self.history.clear()


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def _merge(target: Obj, patch: Obj) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class FakeApiServer:
    """The store served over HTTP on 127.0.0.1 (a free port), in a background thread."""

    def __init__(self) -> None:
        self.store = Store()
        handler = type("Handler", (_Handler,), {"store": self.store})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.drop_watches()
        self.httpd.shutdown()
        self.httpd.server_close()

    def drop_watches(self) -> None:
        """Close every open watch and log stream, as a restarting API server or proxy would."""
        with self.store.changed:
            self.store.generation += 1
            self.store.changed.notify_all()

    def fail_logs(self, pod_prefix: str, code: int = 500) -> None:
        """Answer `pods/log` of every pod whose name starts with `pod_prefix` with `code`, as
        a real server does when it cannot reach the pod's kubelet (500)."""
        with self.store.changed:
            self.store.log_faults[pod_prefix] = code

    def pretend_version(self, git_version: str) -> None:
        """Answer `/version` with this gitVersion and store Jobs as that version would."""
        with self.store.changed:
            self.store.git_version = git_version

    def fail_deletes(self, prefix: str, code: int = 500) -> None:
        """Answer DELETE of every object whose name starts with `prefix` with `code` (an etcd
        timeout, a webhook that fails); `heal_deletes` ends it."""
        with self.store.changed:
            self.store.delete_faults[prefix] = code

    def heal_deletes(self) -> None:
        with self.store.changed:
            self.store.delete_faults.clear()

    def append_log(self, namespace: str, pod: str, text: str) -> None:
        """What the kubelet's container runtime would record; served by `pods/log`."""
        with self.store.changed:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self.store.logs.setdefault((namespace, pod), []).append((stamp, text))
            self.store.changed.notify_all()


class _Handler(BaseHTTPRequestHandler):
    store: Store
    protocol_version = "HTTP/1.1"  # streams are chunked, as the real server's are

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        match = _PATH.match(url.path)
        try:
            if url.path.rstrip("/") == "/version" and method == "GET":
                with self.store.changed:
                    return self._send(200, self.store.version_document())
            if match is None:
                raise ApiError(404, "NotFound", f"no route {url.path}")
            self._route(method, match.groupdict(), query)
        except ApiError as error:
            self._send(error.code, error.status())

    def _route(self, method: str, parts: dict[str, Any], query: dict[str, str]) -> None:
        resource, ns, name, sub = parts["res"], parts["ns"], parts["name"], parts["sub"]
        store = self.store
        with store.changed:
            store.requests[f"{method} {resource}{'/' + sub if sub else ''}"] += 1
        if sub == "log":
            return self._log(ns, name, query)
        if method == "GET" and name is None and query.get("watch") in {"true", "1"}:
            return self._watch(resource, ns, query)
        with store.changed:
            if method == "GET" and name is None:
                items = [  # a real server's list items carry neither kind nor apiVersion
                    {k: v for k, v in obj.items() if k not in {"kind", "apiVersion"}}
                    for obj in store.select(resource, ns, query.get("labelSelector", ""))
                ]
                body: Obj = {"kind": "List", "apiVersion": "v1", "items": items}
                body["metadata"] = {"resourceVersion": str(store.version)}
                return self._send(200, body)
            if method == "GET":
                return self._send(200, store.get(resource, ns or "", name))
            if method == "POST":
                dry_run = query.get("dryRun") == "All"
                return self._send(201, store.create(resource, ns or "", self._body(), dry_run))
            if method == "PATCH":
                return self._send(200, store.patch(resource, ns or "", name, self._body()))
            options = self._body() if int(self.headers.get("Content-Length") or 0) else {}
            options.update({k: int(v) if v.isdigit() else v for k, v in query.items()})
            return self._send(200, store.delete(resource, ns or "", name, options))

    def _body(self) -> Obj:
        length = int(self.headers.get("Content-Length") or 0)
        document: Obj = json.loads(self.rfile.read(length) or b"{}")
        return document

    def _send(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _open_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _chunk(self, data: bytes) -> bool:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            return True
        except OSError:
            return False

    def _watch(self, resource: str, ns: str | None, query: dict[str, str]) -> None:
        self._stream_watch(resource, ns, query)
        self._chunk(b"")  # the last chunk: the server ended the watch

    def _stream_watch(self, resource: str, ns: str | None, query: dict[str, str]) -> None:
        store, selector = self.store, query.get("labelSelector", "")
        since = int(query.get("resourceVersion") or 0)
        deadline = _deadline(query)
        self._open_stream()
        with store.changed:
            generation = store.generation
            if since < store.floor:
                gone = ApiError(410, "Expired", f"too old resource version: {since}").status()
                self._line({"type": "ERROR", "object": gone})
                return
        while True:
            with store.changed:
                events = [e for e in store.history if e[0] > since and e[1] == resource]
                if not events:
                    remaining = deadline - datetime.now(UTC).timestamp()
                    if remaining <= 0 or store.generation != generation:
                        return None
                    store.changed.wait(min(remaining, 0.5))
                    continue
            for version, _, kind, obj in events:
                since = version
                in_scope = ns is None or obj["metadata"].get("namespace") == ns
                wanted = in_scope and matches(selector, obj["metadata"].get("labels") or {})
                if wanted and not self._line({"type": kind, "object": obj}):
                    return None

    def _line(self, event: Obj) -> bool:
        return self._chunk(json.dumps(event).encode() + b"\n")

    def _log(self, ns: str, name: str, query: dict[str, str]) -> None:
        self._stream_log(ns, name, query)
        self._chunk(b"")

    def _stream_log(self, ns: str, name: str, query: dict[str, str]) -> None:
        store, sent = self.store, 0
        follow, stamps = query.get("follow") == "true", query.get("timestamps") == "true"
        deadline = _deadline(query, default=30)
        with store.changed:
            store.get("pods", ns, name)
            generation = store.generation
            for prefix, code in store.log_faults.items():
                if name.startswith(prefix):
                    message = f'Get "https://{name}:10250/containerLogs": dial tcp: i/o timeout'
                    raise ApiError(code, "InternalError", message)
        self._open_stream()
        while True:
            with store.changed:
                lines = store.logs.get((ns, name), [])[sent:]
                pod = store.objects.get(("pods", ns, name))
                finished = pod is None or pod["status"].get("phase") in {"Succeeded", "Failed"}
                if not lines:
                    if not follow or finished or store.generation != generation:
                        return None
                    if deadline <= datetime.now(UTC).timestamp():
                        return None
                    store.changed.wait(0.5)
                    continue
            sent += len(lines)
            data = "".join((f"{stamp} " if stamps else "") + text + "\n" for stamp, text in lines)
            if not self._chunk(data.encode()):
                return None


def _deadline(query: dict[str, str], default: int = 1800) -> float:
    return datetime.now(UTC).timestamp() + int(query.get("timeoutSeconds") or default)

"""Every rank's pod log, copied into the same durable LogStore the local executor writes.

One thread per live pod follows `pods/log` (with timestamps, under a request timeout) and
appends each line to `<run>/attempt-<n>/rank-<index>.log`, so `trainport logs -f` is live. The
last copied timestamp of each pod is kept in a cursor file under the state folder, so a follow
that ends early, or a restarted worker, resumes without duplicating lines. Before a finished
attempt's Job is deleted, `drain` copies what is left and marks the rank's log finished, so the
log is complete after the pod is gone. A rank still running when its attempt ends (the gang
failed elsewhere, or a rank was evicted) has its follow stream shut down first: otherwise the
drain would wait for the follower's stream to time out (up to the watch timeout, per pod).
Every line is stored with the values of the pod's `secretKeyRef`s redacted (core.logs).
A log that cannot be read yet (a container still starting has none; an unreachable kubelet
answers 500) is one debug line, without a traceback, while the followers retry on each
observe; only when it still cannot be read after `PERSISTENT_SECONDS` is it one warning. At
`drain` it is noted in the rank's log and the cleanup goes on, so one run's unreadable log
never holds up the reconciler's pass for the others.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError, ProtocolError

from core.logs import LogStore
from workers.executors.kubernetes.client import (
    MAX_LOG_FOLLOWERS,
    Apis,
    call_raw,
    read_json,
    response_lines,
)
from workers.executors.kubernetes.manifests import CONTAINER

TERMINAL = frozenset({"Succeeded", "Failed"})
STARTED = frozenset({"Running", *TERMINAL})
PERSISTENT_SECONDS = 60.0  # a log unreadable this long is worth a warning, not before
log = logging.getLogger("trainport.executors.kubernetes.logs")


class PodLogs:
    """Copies pod logs into the log store; at most one copier per pod at a time."""

    def __init__(
        self,
        apis: Apis,
        store: LogStore,
        state_dir: Path,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._apis = apis
        self._clock = clock
        self._store = store
        self._cursors = state_dir / "kubernetes" / "log-cursors"
        self._lock = threading.Lock()
        self._pod_locks: dict[str, threading.Lock] = {}
        self._following: set[str] = set()
        self._streams: dict[str, Any] = {}  # pod uid -> its follower's open response
        # Pods whose follow has failed since it last worked: when it first failed, and whether
        # that was warned about (it is, once, past PERSISTENT_SECONDS).
        self._failing: dict[str, tuple[datetime, bool]] = {}

    def follow(self, run_id: str, attempt: int, rank: int, pod: dict[str, Any]) -> None:
        """Start following a started pod's log in the background, unless that is under way."""
        uid = _uid(pod)
        if _phase(pod) not in STARTED or self._is_done(uid):
            return
        with self._lock:
            if uid in self._following or len(self._following) >= MAX_LOG_FOLLOWERS:
                return
            self._following.add(uid)
        thread = threading.Thread(
            target=self._follow, args=(run_id, attempt, rank, pod), daemon=True, name=f"log-{uid}"
        )
        thread.start()

    def _follow(self, run_id: str, attempt: int, rank: int, pod: dict[str, Any]) -> None:
        uid = _uid(pod)
        try:
            self.copy(run_id, attempt, rank, pod, follow=True)
        except Exception as error:  # the next observe retries from the cursor
            self._note_follow_failure(uid, _name(pod), error)
        else:
            with self._lock:
                self._failing.pop(uid, None)
        finally:
            with self._lock:
                self._following.discard(uid)

    def _note_follow_failure(self, uid: str, name: str, error: Exception) -> None:
        """One debug line when a pod's log first cannot be read (a container that has not
        started has none yet); one warning if it still cannot be read PERSISTENT_SECONDS later
        (an unreachable kubelet). Retries in between say nothing."""
        now = self._clock()
        with self._lock:
            since, warned = self._failing.setdefault(uid, (now, False))
            persistent = not warned and (now - since).total_seconds() >= PERSISTENT_SECONDS
            if persistent:
                self._failing[uid] = (since, True)
        if now == since:
            log.debug("cannot follow the log of pod %s yet (%s); retrying", name, _why(error))
        elif persistent:
            log.warning(
                "cannot follow the log of pod %s for %ds now (%s); still retrying",
                name, (now - since).total_seconds(), _why(error),
            )  # fmt: skip

    def drain(self, run_id: str, attempt: int, rank: int, pod: dict[str, Any]) -> None:
        """Copy the rest of a finished pod's log and mark the rank's log finished."""
        self._interrupt(_uid(pod))
        if _phase(pod) in STARTED and not self._is_done(_uid(pod)):
            try:
                self.copy(run_id, attempt, rank, pod, follow=False)
            except (ApiException, HTTPError) as error:
                if not isinstance(error, ApiException) or error.status != 404:
                    self._note_lost_tail(run_id, attempt, rank, pod, error)
        self._store.mark_finished(run_id, attempt, rank)

    def _note_lost_tail(
        self, run_id: str, attempt: int, rank: int, pod: dict[str, Any], error: Exception
    ) -> None:
        """The pod's log cannot be read (its kubelet is unreachable): say so in the rank's log
        and go on. Keeping the Job to retry would hold every later cleanup of this pass, and
        the pod, once deleted, takes its log with it anyway."""
        why = _why(error)
        log.warning("the rest of pod %s's log could not be copied (%s)", _name(pod), why)
        writer = self._store.writer(run_id, attempt, rank)
        try:
            writer.write(
                "system", f"the rest of this log could not be copied from the cluster: {why}"
            )
        finally:
            writer.close(finished=False)

    def copy(self, run_id: str, attempt: int, rank: int, pod: dict[str, Any], follow: bool) -> None:
        uid = _uid(pod)
        with self._pod_lock(uid):
            cursor = self._cursor(uid)
            writer = self._store.writer(run_id, attempt, rank, self._secret_values(pod))
            try:
                last = self._stream(pod, cursor, follow, writer.write)
            finally:
                writer.close(finished=False)
            if last != cursor:
                self._save_cursor(uid, last)
            if _phase(pod) in TERMINAL or not follow:
                self._save_cursor(uid, last, done=True)

    def _secret_values(self, pod: dict[str, Any]) -> list[str]:
        """The values the pod's `secretKeyRef`s name, read from its org's Secret, so the log
        writer redacts them. Read at each copy: a restarted worker knows them too."""
        refs = {
            (ref["name"], ref["key"])
            for container in (pod.get("spec") or {}).get("containers") or []
            for variable in container.get("env") or []
            if (ref := ((variable.get("valueFrom") or {}).get("secretKeyRef")))
        }
        secrets: dict[str, dict[str, str]] = {}
        for name, _ in refs:
            secrets.setdefault(name, self._secret_data(pod["metadata"]["namespace"], name))
        return [
            base64.b64decode(secrets[name][key]).decode(errors="replace")
            for name, key in refs
            if key in secrets[name]
        ]

    def _secret_data(self, namespace: str, name: str) -> dict[str, str]:
        try:
            document = read_json(
                self._apis.core.read_namespaced_secret,
                name,
                namespace,
                _request_timeout=self._apis.request_timeout,
            )
        except ApiException as error:
            if error.status == 404:  # gone: its values cannot be known, nor reach a new pod
                return {}
            raise  # never copy a log unredacted: the next observe tries again
        data: dict[str, str] = document.get("data") or {}
        return data

    def _interrupt(self, uid: str) -> None:
        """End the pod's follow stream now; its follower stops at the line it had copied."""
        with self._lock:  # held: the follower unregisters its stream before releasing it
            response = self._streams.get(uid)
            if response is not None:
                # A stream at its end may have closed its socket already: nothing to end then.
                with contextlib.suppress(OSError):
                    response.shutdown()  # unblocks the follower's read; the pod lock then frees

    def _stream(self, pod: dict[str, Any], cursor: str, follow: bool, write: Any) -> str:
        meta = pod["metadata"]
        response = call_raw(
            self._apis.core.read_namespaced_pod_log,
            meta["name"],
            meta["namespace"],
            container=CONTAINER,
            follow=follow,
            timestamps=True,
            _request_timeout=(self._apis.request_timeout, self._apis.watch_timeout),
        )
        last = cursor
        if follow:
            with self._lock:
                self._streams[_uid(pod)] = response
        try:
            for line in response_lines(response):
                stamp, _, text = line.partition(" ")
                if stamp and stamp > last:  # RFC 3339 Nano in UTC sorts as text
                    write("stdout", text)
                    last = stamp
        except ProtocolError:
            if not follow:
                raise
            # A follow stream cut short (by _interrupt, or the network) ends here; the next copy
            # resumes from the cursor.
        finally:
            if follow:
                with self._lock:
                    self._streams.pop(_uid(pod), None)
            response.release_conn()
        return last

    def _pod_lock(self, uid: str) -> threading.Lock:
        with self._lock:
            return self._pod_locks.setdefault(uid, threading.Lock())

    def _cursor(self, uid: str) -> str:
        path = self._cursors / uid
        return path.read_text().split("\n")[0] if path.exists() else ""

    def _is_done(self, uid: str) -> bool:
        path = self._cursors / uid
        return path.exists() and path.read_text().endswith("\ndone")

    def _save_cursor(self, uid: str, stamp: str, done: bool = False) -> None:
        self._cursors.mkdir(parents=True, exist_ok=True)
        temporary = self._cursors / f".{uid}.tmp"
        temporary.write_text(stamp + ("\ndone" if done else ""))
        temporary.replace(self._cursors / uid)

    def forget(self, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            (self._cursors / _uid(pod)).unlink(missing_ok=True)
            with self._lock:
                self._pod_locks.pop(_uid(pod), None)


def _why(error: Exception) -> str:
    """An API error as one line: its status and the server's message, not its headers."""
    if isinstance(error, ApiException):
        try:
            message = json.loads(error.body or "{}").get("message") or error.reason
        except ValueError:
            message = error.reason
        return f"HTTP {error.status}: {message}"
    return f"{type(error).__name__}: {error}"


def _uid(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["uid"])


def _name(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["name"])


def _phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")

"""Every rank's pod log, copied into the run logs in the database (core/log_archive.py).

One thread per live pod follows `pods/log` (with timestamps, under a request timeout) and
stores its lines, with the kubelet's timestamps, in the rank's stream every `flush_seconds`
(one thread flushes every follower's batch), so `trainport logs -f` is live on every API
replica. The last stored kubelet timestamp is the stream's cursor, in the database: a follow
that ends early, a restarted worker or another worker resumes after it without storing a line
twice, and the worker keeps no state of its own. Before a finished attempt's Job is deleted,
`drain` copies what is left and finishes the rank's log, so the log is complete after the pod
is gone. A rank still running when its attempt ends (the gang
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
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError, ProtocolError

from core.kubernetes.manifests import CONTAINER
from core.log_archive import LogArchive
from core.logs import CHUNK_BYTES, MAX_LINE_BYTES, LogKey, format_lines, redaction_targets
from workers.executors.kubernetes.client import (
    MAX_LOG_FOLLOWERS,
    Apis,
    call_raw,
    read_json,
    response_lines,
)

TERMINAL = frozenset({"Succeeded", "Failed"})
STARTED = frozenset({"Running", *TERMINAL})
PERSISTENT_SECONDS = 60.0  # a log unreadable this long is worth a warning, not before
log = logging.getLogger("trainport.executors.kubernetes.logs")


class PodLogs:
    """Copies pod logs into the run logs; at most one copier per pod at a time."""

    def __init__(
        self,
        apis: Apis,
        archive: LogArchive,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._apis = apis
        self._archive = archive
        self._clock = clock
        self._lock = threading.Lock()
        self._pod_locks: dict[str, threading.Lock] = {}
        self._following: set[str] = set()
        self._streams: dict[str, Any] = {}  # pod uid -> its follower's open response
        self._batches: dict[str, Batch] = {}  # pod uid -> its follower's lines not yet stored
        self._copied: set[str] = set()  # pods whose whole log this process has copied
        # Pods whose follow has failed since it last worked: when it first failed, and whether
        # that was warned about (it is, once, past PERSISTENT_SECONDS).
        self._failing: dict[str, tuple[datetime, bool]] = {}
        self._flusher: threading.Thread | None = None
        self._stopped = threading.Event()

    def follow(self, run_id: str, attempt: int, rank: int, pod: dict[str, Any]) -> None:
        """Start following a started pod's log in the background, unless that is under way."""
        uid = _uid(pod)
        if _phase(pod) not in STARTED:
            return
        with self._lock:
            if uid in self._following or uid in self._copied:
                return
            if len(self._following) >= MAX_LOG_FOLLOWERS:
                return
            self._following.add(uid)
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush, name="log-flush", daemon=True)
                self._flusher.start()
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
        """Copy the rest of a finished pod's log and finish the rank's log."""
        self._interrupt(_uid(pod))
        note = b""
        if _phase(pod) in STARTED and _uid(pod) not in self._copied:
            try:
                self.copy(run_id, attempt, rank, pod, follow=False)
            except (ApiException, HTTPError) as error:
                if not isinstance(error, ApiException) or error.status != 404:
                    note = self._lost_tail(pod, error)
        self._archive.finish(LogKey(run_id, attempt, rank), note)

    def _lost_tail(self, pod: dict[str, Any], error: Exception) -> bytes:
        """The pod's log cannot be read (its kubelet is unreachable): say so in the rank's log
        and go on. Keeping the Job to retry would hold every later cleanup of this pass, and
        the pod, once deleted, takes its log with it anyway."""
        why = _why(error)
        log.warning("the rest of pod %s's log could not be copied (%s)", _name(pod), why)
        message = f"the rest of this log could not be copied from the cluster: {why}"
        return format_lines("system", message, ())

    def copy(self, run_id: str, attempt: int, rank: int, pod: dict[str, Any], follow: bool) -> None:
        uid = _uid(pod)
        key = LogKey(run_id, attempt, rank)
        with self._pod_lock(uid):
            head = self._archive.head(key)
            if not head.finished:
                batch = Batch(self._archive, key, head.cursor, self._secret_values(pod))
                self._stream(pod, batch, follow)
            if head.finished or _phase(pod) in TERMINAL or not follow:
                with self._lock:
                    self._copied.add(uid)

    def stop(self) -> None:
        """End the flushing thread (followers store what they hold when their stream ends)."""
        self._stopped.set()

    def _flush(self) -> None:
        """Store every follower's new lines every `flush_seconds`, however slowly they come."""
        while not self._stopped.wait(self._archive.flush_seconds):
            with self._lock:
                batches = list(self._batches.values())
            for batch in batches:
                try:
                    batch.flush()
                except Exception as error:  # the follower stores them, or fails and retries
                    log.debug("cannot store log lines yet: %s", error)

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

    def _stream(self, pod: dict[str, Any], batch: Batch, follow: bool) -> None:
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
        if follow:
            with self._lock:
                self._streams[_uid(pod)] = response
                self._batches[_uid(pod)] = batch
        try:
            for line in response_lines(response):
                stamp, _, text = line.partition(" ")
                if stamp:
                    batch.add(stamp, text)
        except ProtocolError:
            if not follow:
                raise
            # A follow stream cut short (by _interrupt, or the network) ends here; the next copy
            # resumes from the stored cursor.
        finally:
            if follow:
                with self._lock:
                    self._streams.pop(_uid(pod), None)
                    self._batches.pop(_uid(pod), None)
            response.release_conn()
            batch.flush()

    def _pod_lock(self, uid: str) -> threading.Lock:
        with self._lock:
            return self._pod_locks.setdefault(uid, threading.Lock())

    def forget(self, pods: list[dict[str, Any]]) -> None:
        with self._lock:
            for pod in pods:
                self._pod_locks.pop(_uid(pod), None)
                self._copied.discard(_uid(pod))
                self._failing.pop(_uid(pod), None)


class Batch:
    """One pod's log lines not yet stored, and the stream's cursor (the last stored kubelet
    timestamp): lines at or before it are stored already and skipped."""

    def __init__(self, archive: LogArchive, key: LogKey, cursor: str, secrets: list[str]) -> None:
        self._archive = archive
        self._key = key
        self._redact = redaction_targets(secrets)
        self._lock = threading.Lock()
        self._lines: list[tuple[str, bytes]] = []  # (kubelet timestamp, stored form)
        self._size = 0
        self.cursor = cursor

    def add(self, stamp: str, text: str) -> None:
        if stamp <= self.cursor:  # RFC 3339 Nano in UTC sorts as text
            return
        data = format_lines("stdout", text[:MAX_LINE_BYTES], self._redact, _line_time(stamp))
        with self._lock:
            self._lines.append((stamp, data))
            self._size += len(data)
            full = self._size >= CHUNK_BYTES
        if full:
            self.flush()

    def flush(self) -> None:
        """Store the lines; if another copier stored some meanwhile, only those after it."""
        with self._lock:
            while self._lines:
                last = self._lines[-1][0]
                data = b"".join(data for _, data in self._lines)
                done = self._archive.append(self._key, data, expected=self.cursor, cursor=last)
                if done.head.finished:
                    self._lines.clear()
                else:
                    self.cursor = done.head.cursor
                    self._lines = [line for line in self._lines if line[0] > self.cursor]
            self._size = 0


def _line_time(stamp: str) -> str:
    """The kubelet's RFC 3339 UTC timestamp (nanoseconds) in our form (microseconds); empty
    (the copy's time) if it is not one."""
    whole, _, fraction = stamp.removesuffix("Z").partition(".")
    if not stamp.endswith("Z") or len(whole) != 19 or not (fraction or "0").isdigit():
        return ""
    return f"{whole}.{(fraction + '000000')[:6]}Z"


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

"""A watched, label-selected copy of one kind of object (Jobs or Pods), kept in memory.

The mirror lists once, then watches from the list's resourceVersion with a server-side
`timeoutSeconds`; when a watch ends (timeout, dropped connection) it resumes from the last
resourceVersion it saw, and when the server answers 410 Gone (that version is compacted away) it
lists again. Every `resync_seconds` it re-lists anyway, which heals anything a watch missed. A
restarted worker starts with an empty mirror, so its first act is a list: the view is rebuilt
from the cluster, never from memory. Objects are kept as the API's JSON, which is all the
classifier reads and half the memory of the client's models; after each list they are frozen
out of the garbage collector's full collections (core/heap.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from core import heap

GONE = 410
RETRY_SECONDS = 1.0
log = logging.getLogger("trainport.executors.kubernetes")
Key = tuple[str, str]  # (namespace, name)


class Mirror:
    """One resource's objects by (namespace, name), fed by a list-then-watch loop."""

    def __init__(
        self,
        list_call: Callable[..., Any],
        selector: str,
        *,
        namespace: str | None = None,
        watch_timeout: int = 300,
        request_timeout: float = 30.0,
        resync_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list_call = list_call
        self._scope = {"namespace": namespace} if namespace else {}
        self._selector = selector
        self._watch_timeout = watch_timeout
        self._request_timeout = request_timeout
        self._resync_seconds = resync_seconds
        self._clock = clock
        self._objects: dict[Key, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None  # the open watch, closed by stop()
        self.resource_version: str | None = None
        self.listed_at: float | None = None
        self.calls = 0  # requests made: lists and watches

    # -- reading ------------------------------------------------------------------------------

    def objects(self) -> list[dict[str, Any]]:
        with self._changed:
            return list(self._objects.values())

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate()` holds after some change, or `timeout` passes."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    @property
    def synced(self) -> bool:
        return self.listed_at is not None

    # -- the loop -----------------------------------------------------------------------------

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            # Unblocks the thread's read; it sees the stop and ends. The watch may have ended
            # (its socket closed or released) since we looked: then there is nothing to unblock.
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                response.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # the loop must outlive any one failed request
                if self._stop.is_set():
                    return
                log.warning("watch of %s failed; retrying", self._selector, exc_info=True)
                self._stop.wait(RETRY_SECONDS)

    def step(self) -> None:
        """One list (first, after 410, or when a resync is due) or one watch."""
        due = self.listed_at is None or self._clock() - self.listed_at >= self._resync_seconds
        if self.resource_version is None or due:
            self.relist()
        else:
            self.watch_once()

    def relist(self) -> None:
        self.calls += 1
        response = self._list_call(
            **self._scope,
            label_selector=self._selector,
            _preload_content=False,
            _request_timeout=self._request_timeout,
        )
        document = json.loads(response.data)
        fresh = {_key(obj): obj for obj in document.get("items") or []}
        with self._changed:
            self._objects = fresh
            self.resource_version = document["metadata"].get("resourceVersion")
            self.listed_at = self._clock()
            self._changed.notify_all()
        heap.settle()  # long-lived until the next list: out of every full collection's way

    def watch_once(self) -> None:
        """Apply events until the server ends the watch; 410 Gone means list again."""
        try:
            for event in self._events():
                self._apply(event)
        except ApiException as error:
            if error.status != GONE:
                raise
            self._gone()

    def _events(self) -> Iterator[dict[str, Any]]:
        self.calls += 1
        response = self._list_call(
            **self._scope,
            label_selector=self._selector,
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=self.resource_version,
            timeout_seconds=self._watch_timeout,
            _preload_content=False,
            _request_timeout=(self._request_timeout, self._watch_timeout + self._request_timeout),
        )
        self._response = response
        try:
            for line in iter_resp_lines(response):
                if self._stop.is_set():
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            self._response = None
            response.release_conn()

    def _apply(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == GONE:
                return self._gone()
            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
        with self._changed:
            self.resource_version = obj.get("metadata", {}).get("resourceVersion")
            if kind == "DELETED":
                self._objects.pop(_key(obj), None)
            elif kind in {"ADDED", "MODIFIED"}:
                self._objects[_key(obj)] = obj
            self._changed.notify_all()
        return None

    def _gone(self) -> None:
        log.info("watch of %s expired (410 Gone); listing again", self._selector)
        self.resource_version = None


def _key(obj: dict[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")

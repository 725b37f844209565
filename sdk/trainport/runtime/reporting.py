"""The background reporter: ships metric batches, heartbeats and checkpoint records.

One daemon thread per process does all the talking, so a training step never waits on the
network. Where it sends to is a `ReportSink`: the platform's API (`APISink`) inside a run, a
JSON-lines file (`FileSink`) on a laptop. A sink raises `TemporaryReportError` for failures worth
retrying (no connection, 5xx, 429), after which the reporter backs off exponentially, and
`PermanentReportError` for a request the server will never accept (other 4xx), which is
dropped with a warning so one bad batch cannot block the rest.

At exit the reporter flushes what it holds within a short deadline: a run stopping in its grace
period must not hang on an unreachable API.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from trainport.runtime.api import REQUEST_TIMEOUT_S, RunAPI, RunAPIError
from trainport.runtime.metrics import MAX_BATCH, MetricBuffer

log = logging.getLogger("trainport.runtime")
SEND_INTERVAL_S = 2.0
HEARTBEAT_INTERVAL_S = 15.0
MAX_BACKOFF_S = 60.0


class TemporaryReportError(Exception):
    """Worth trying again later: the API was unreachable, busy or failing."""


class PermanentReportError(Exception):
    """The API refused this request for good; sending it again would not help."""


class ReportSink(Protocol):
    def send_metrics(self, points: list[dict[str, Any]], timeout: float) -> None: ...
    def send_heartbeat(self, body: Mapping[str, Any], timeout: float) -> None: ...
    def register_checkpoint(self, body: Mapping[str, Any], timeout: float) -> None: ...
    def close(self) -> None: ...


class APISink:
    """The run's own routes: `/v1/runs/{id}/metrics`, `/heartbeat` and `/checkpoints`."""

    def __init__(self, api: RunAPI) -> None:
        self.api = api

    def send_metrics(self, points: list[dict[str, Any]], timeout: float) -> None:
        self._post("/metrics", {"points": points}, timeout)

    def send_heartbeat(self, body: Mapping[str, Any], timeout: float) -> None:
        self._post("/heartbeat", dict(body), timeout)

    def register_checkpoint(self, body: Mapping[str, Any], timeout: float) -> None:
        self._post("/checkpoints", dict(body), timeout)

    def _post(self, suffix: str, body: dict[str, Any], timeout: float) -> None:
        try:
            self.api.post(self.api.run_path(suffix), body, timeout)
        except RunAPIError as exc:
            if exc.temporary:
                raise TemporaryReportError(str(exc)) from exc
            raise PermanentReportError(str(exc)) from exc

    def close(self) -> None:
        self.api.close()


class FileSink:
    """Offline: every point and checkpoint record appended to a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _append(self, kind: str, documents: list[Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as sink:
            for document in documents:
                sink.write(json.dumps({"kind": kind, **document}) + "\n")

    def send_metrics(self, points: list[dict[str, Any]], timeout: float) -> None:
        self._append("metric", points)

    def send_heartbeat(self, body: Mapping[str, Any], timeout: float) -> None:
        return None  # nobody to tell

    def register_checkpoint(self, body: Mapping[str, Any], timeout: float) -> None:
        self._append("checkpoint", [dict(body)])

    def close(self) -> None:
        return None


class Reporter:
    """Owns the sender thread; every public method returns at once."""

    def __init__(
        self,
        sink: ReportSink,
        buffer: MetricBuffer,
        *,
        interval: float = SEND_INTERVAL_S,
        heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink, self.buffer = sink, buffer
        self.interval, self.heartbeat_interval, self._clock = interval, heartbeat_interval, clock
        self.sent_points = 0
        self.dropped_points = 0
        self._checkpoints: deque[Mapping[str, Any]] = deque()
        self._heartbeat: Mapping[str, Any] | None = None
        self._heartbeat_due = 0.0
        self._failures = 0
        self._in_flight = 0
        self._retry_at = 0.0
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="trainport-reporter", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def set_heartbeat(self, body: Mapping[str, Any], *, urgent: bool = False) -> None:
        first = self._heartbeat is None
        self._heartbeat = dict(body)
        if first or urgent:
            self._heartbeat_due = 0.0
            self._wake.set()

    def add_checkpoint(self, body: Mapping[str, Any]) -> None:
        self._checkpoints.append(dict(body))
        self._wake.set()

    @property
    def pending(self) -> int:
        """Points and records not yet delivered (buffered or being sent)."""
        return len(self.buffer) + len(self._checkpoints) + self._in_flight

    def flush(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until the thread has delivered everything; True if it did."""
        deadline = self._clock() + timeout
        self._retry_at = 0.0
        while self.pending and self._clock() < deadline and self._thread.is_alive():
            self._wake.set()
            time.sleep(0.01)
        return not self.pending

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and send what is left, for at most `timeout` seconds."""
        if self._closed.is_set():
            return
        deadline = self._clock() + timeout
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout)
        self._retry_at = 0.0  # a last try even during a backoff
        while self.pending and self._clock() < deadline:
            if not self._cycle(deadline, final=True):
                break
        if self._heartbeat is not None and self._clock() < deadline:
            self._send(partial(self.sink.send_heartbeat, dict(self._heartbeat)), deadline)
        if self.pending:
            log.warning("trainport: %d metric points and records were not delivered", self.pending)
        self.sink.close()

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.buffer.compact()
                self._cycle(None, final=False)
            except Exception:  # the reporter must never die and take reporting with it
                log.exception("trainport: the metrics reporter failed; it keeps going")

    def _cycle(self, deadline: float | None, *, final: bool) -> bool:
        """Send checkpoint records, metric batches and a due heartbeat; False on a failure
        worth retrying (the reporter is backing off)."""
        if self._clock() < self._retry_at:
            return False
        while self._checkpoints:
            send = partial(self.sink.register_checkpoint, self._checkpoints[0])
            if self._send(send, deadline) is None:
                return False
            self._checkpoints.popleft()
        if not self._ship_metrics(deadline):
            return False
        if not final and self._heartbeat is not None and self._clock() >= self._heartbeat_due:
            self._heartbeat_due = self._clock() + self.heartbeat_interval
            send = partial(self.sink.send_heartbeat, dict(self._heartbeat))
            return self._send(send, deadline) is not None
        return True

    def _ship_metrics(self, deadline: float | None) -> bool:
        while len(self.buffer):
            batch = self.buffer.take(MAX_BATCH)
            self._in_flight = len(batch)
            documents = [point.to_json() for point in batch]
            try:
                delivered = self._send(partial(self.sink.send_metrics, documents), deadline)
                if delivered is None:
                    self.buffer.put_back(batch)  # keep them for the next try
            finally:
                self._in_flight = 0
            if delivered is None:
                return False
            if delivered:
                self.sent_points += len(batch)
            else:
                self.dropped_points += len(batch)
        return True

    def _send(self, action: Callable[[float], None], deadline: float | None) -> bool | None:
        """True: delivered; False: refused for good (dropped); None: try again later."""
        timeout = REQUEST_TIMEOUT_S
        if deadline is not None:
            timeout = max(0.1, min(timeout, deadline - self._clock()))
        if not self._send_lock.acquire(timeout=timeout):  # the thread is stuck sending
            return None
        try:
            action(timeout)
        except TemporaryReportError as exc:
            self._back_off(exc)
            return None
        except PermanentReportError as exc:
            log.warning("trainport: the API refused a report, dropping it: %s", exc)
            return False
        finally:
            self._send_lock.release()
        self._failures, self._retry_at = 0, 0.0
        return True

    def _back_off(self, exc: Exception) -> None:
        if self._failures == 0:
            log.warning("trainport: cannot report to the API (%s); buffering and retrying", exc)
        cap = min(MAX_BACKOFF_S, self.interval * 2.0**self._failures)
        self._failures += 1
        self._retry_at = self._clock() + cap * (0.5 + random.random() / 2)  # noqa: S311

"""`Run`: what training code holds, from `trainport.runtime.init()` to the end of the process.

    run = trainport.runtime.init()
    state = run.checkpoints.load()                      # resume, or None
    for step in range(start, total):
        ...
        run.log(step=step, loss=loss)                   # never waits on the network
        run.progress(step, total)
        if run.should_stop():                           # SIGTERM: cancel or preemption
            run.checkpoints.save(state, step=step)
            break

Inside a platform run it reports to the API; elsewhere (`run.offline`) the same calls write
metrics to `.trainport-local/metrics.jsonl` and checkpoints to `.trainport-local/checkpoints/`.
In a distributed run only rank 0 (`run.is_main`) reports and saves; on other ranks `log`,
`progress` and `checkpoints.save` do nothing, so every rank can run the same code.
"""

from __future__ import annotations

import atexit
import threading
from types import TracebackType
from typing import Any

from trainport.runtime.api import RunAPI
from trainport.runtime.checkpoints import DEFAULT_KEEP_LAST, Checkpoint, Checkpoints
from trainport.runtime.datasets import Datasets
from trainport.runtime.environment import OFFLINE_ROOT, RunEnvironment
from trainport.runtime.metrics import DEFAULT_CAPACITY, MAX_BATCH, MetricBuffer, make_point
from trainport.runtime.reporting import (
    SEND_INTERVAL_S,
    APISink,
    FileSink,
    Reporter,
    ReportSink,
)
from trainport.runtime.stopping import StopSignal
from trainport.runtime.stores import open_store

FLUSH_TIMEOUT_S = 5.0
OFFLINE_METRICS = OFFLINE_ROOT / "metrics.jsonl"


class Run:
    """The running process's handle on its run (see the module docstring)."""

    def __init__(
        self,
        environment: RunEnvironment,
        *,
        keep_checkpoints: int = DEFAULT_KEEP_LAST,
        metric_capacity: int = DEFAULT_CAPACITY,
        send_interval: float | None = None,
        handle_sigterm: bool | None = None,
    ) -> None:
        self.environment = environment
        self.resumed_from_step: int | None = None
        self._step: int | None = None  # the latest step seen by log() or progress()
        self._total_steps: int | None = None
        self._closed = False
        self._stop = StopSignal()
        # None: SIGTERM keeps its default (the process ends) until the code first asks
        # should_stop(), which shows it will stop gracefully; True installs the flag now.
        self._stop_on_poll = handle_sigterm is None
        if handle_sigterm:
            self._stop.install()
        api = self._api()
        self.datasets = Datasets(environment.datasets, environment.cache_dir, api)
        self.buffer = MetricBuffer(metric_capacity)
        self.reporter: Reporter | None = None
        if environment.is_main:
            sink: ReportSink = (
                APISink(self._api() or api) if api else FileSink(OFFLINE_METRICS.resolve())
            )
            interval = SEND_INTERVAL_S if send_interval is None else send_interval
            self.reporter = Reporter(sink, self.buffer, interval=interval)
            self.reporter.set_heartbeat(self._heartbeat())  # alive from the start
        self.checkpoints = Checkpoints(
            open_store(environment.checkpoint_uri, environment.cache_dir, api),
            keep_last=keep_checkpoints,
            writer=environment.is_main,
            on_saved=self._checkpoint_saved,
            on_loaded=self._checkpoint_loaded,
        )
        self._lock = threading.Lock()

    def _api(self) -> RunAPI | None:
        env = self.environment
        return RunAPI(env.api_url, env.run_id, env.token) if env.online and env.api_url else None

    # -- who and where ----------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.environment.run_id

    @property
    def attempt(self) -> int:
        return self.environment.attempt

    @property
    def rank(self) -> int:
        return self.environment.rank

    @property
    def world_size(self) -> int:
        return self.environment.world_size

    @property
    def is_main(self) -> bool:
        return self.environment.is_main

    @property
    def offline(self) -> bool:
        return not self.environment.online

    # -- reporting --------------------------------------------------------------------------

    def log(self, step: int | None = None, **values: Any) -> None:
        """Record metric values at `step` (default: the last step seen). Returns at once: the
        points are sent in batches by a background thread."""
        if step is None:
            step = self._step or 0
        else:
            self._step = max(self._step or 0, step)
        point = make_point(step, values)
        if self.reporter is None or not point.values:
            return
        if self.buffer.append(point) or len(self.buffer) >= MAX_BATCH:
            self.reporter.wake()

    def progress(self, step: int, total_steps: int | None = None) -> None:
        """Where training stands; sent as heartbeats (the run's `progress` and finish estimate)."""
        self._step = step
        if total_steps is not None:
            self._total_steps = total_steps
        if self.reporter is not None:
            self.reporter.set_heartbeat(self._heartbeat())

    def _heartbeat(self) -> dict[str, int | None]:
        return {
            "step": self._step,
            "total_steps": self._total_steps,
            "resumed_from_step": self.resumed_from_step,
        }

    def should_stop(self) -> bool:
        """True once the process got SIGTERM (cancel, preemption): save and exit soon.

        The first call turns SIGTERM into this flag (unless `init(handle_sigterm=False)`): code
        that polls it stops gracefully; code that never does keeps SIGTERM's default, so a
        cancel ends it at once instead of after the platform's grace period."""
        if self._stop_on_poll:
            self._stop_on_poll = not self._stop.install()  # retried from the main thread
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Make `should_stop()` true, as SIGTERM would (for tests and custom signals)."""
        self._stop.request()

    def _checkpoint_saved(self, checkpoint: Checkpoint) -> None:
        if self.reporter is not None:
            self.reporter.add_checkpoint(
                {
                    "step": checkpoint.step,
                    "path": checkpoint.path,
                    "files": [entry.to_json() for entry in checkpoint.files],
                    "metrics": dict(checkpoint.metrics),
                }
            )

    def _checkpoint_loaded(self, checkpoint: Checkpoint) -> None:
        self.resumed_from_step = checkpoint.step
        self._step = max(self._step or 0, checkpoint.step)
        if self.reporter is not None:
            self.reporter.set_heartbeat(self._heartbeat(), urgent=True)

    # -- the end ------------------------------------------------------------------------------

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Send buffered points now (waits up to `timeout`); the reporter keeps running."""
        if self.reporter is not None:
            self.reporter.flush(timeout)

    def close(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Flush what is buffered (for at most `timeout` seconds) and stop reporting.
        Called at interpreter exit; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.reporter is not None:
            self.reporter.close(timeout)
        self._stop.uninstall()

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


_current: Run | None = None
_init_lock = threading.Lock()


def init(**options: Any) -> Run:
    """The process's `Run`, made from the environment on the first call (later calls return
    the same one). Options: `keep_checkpoints`, `metric_capacity`, `send_interval`,
    `handle_sigterm` (default None: SIGTERM keeps its default until the first `should_stop()`;
    True: caught from now on; False: never caught)."""
    global _current
    with _init_lock:
        if _current is None or _current._closed:
            _current = Run(RunEnvironment.from_env(), **options)
            atexit.register(_current.close)
        return _current

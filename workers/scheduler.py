"""One scheduler pass, as the `trainport.schedule` task runs it: register, accept, admit.

Each step is its own short transaction: the local cluster's inventory is (re)registered from
this worker's settings, pending runs are accepted into the queue (or failed as unschedulable),
then one admission pass grants capacity (core/scheduling/admission.py holds the rules and the
locking that lets several schedulers race safely). Admitted runs leave with a launch task in
the outbox; the caller publishes it at once rather than waiting for the relay.

Every created run asks for a pass of its own (its `trainport.schedule` task). `PassQueue` folds
the requests that arrive while a pass runs in this process into the next pass, so a burst of
submits costs a few passes, not one each (three write transactions apiece, on SQLite each the
one writer the API's creates wait for): admission per batch rather than per run (issue 17).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from core.scheduling.admission import Admitted, accept_pending, admit_queued_runs
from core.settings import Settings
from workers.clusters import sync_kubernetes_clusters, sync_local

log = logging.getLogger("trainport.scheduler")


@dataclass(frozen=True)
class PassResult:
    accepted: int = 0
    admitted: list[Admitted] = field(default_factory=list)


def run_pass(
    factory: sessionmaker[Session], settings: Settings, run_ids: Sequence[str] | None = None
) -> PassResult:
    """Accept `run_ids` (every pending run when None) and admit whatever fits now."""
    sync_kubernetes_clusters(factory, settings)
    with session_scope(factory) as session:
        sync_local(session, settings)
        accepted = accept_pending(session, run_ids)
    with session_scope(factory) as session:
        admitted = admit_queued_runs(session, settings)
    if accepted or admitted:
        log.info("scheduler pass: %d accepted, %d admitted", accepted, len(admitted))
    return PassResult(accepted, admitted)


@dataclass
class QueuedPasses:
    passes: int = 0  # passes this caller ran (0: its request went into another caller's pass)
    admitted: list[Admitted] = field(default_factory=list)


class PassQueue:
    """At most one pass at a time per process; requests made meanwhile join the next pass.

    A caller that finds a pass running leaves its run id and returns at once; the running
    caller, once done, runs again for everything left (every pending run if any request named
    none), until nothing is left. So no request is dropped: one that arrives after the last
    look is made by a caller that then finds the pass free and runs it itself.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._running = threading.Lock()
        self._wanted: list[str | None] = []

    def run(
        self, factory: sessionmaker[Session], settings: Settings, run_id: str | None = None
    ) -> QueuedPasses:
        with self._guard:
            self._wanted.append(run_id)
        done = QueuedPasses()
        while self._anything_wanted() and self._running.acquire(blocking=False):
            try:
                with self._guard:
                    wanted, self._wanted = self._wanted, []
                run_ids = None if None in wanted else list(dict.fromkeys(r for r in wanted if r))
                if wanted:
                    done.admitted += run_pass(factory, settings, run_ids).admitted
                    done.passes += 1
            finally:
                self._running.release()
        return done

    def _anything_wanted(self) -> bool:
        with self._guard:
            return bool(self._wanted)

"""One scheduler pass, as the `trainport.schedule` task runs it: register, accept, admit.

Each step is its own short transaction: the local cluster's inventory is (re)registered from
this worker's settings, pending runs are accepted into the queue (or failed as unschedulable),
then one admission pass grants capacity (core/scheduling/admission.py holds the rules and the
locking that lets several schedulers race safely). Admitted runs leave with a launch task in
the outbox; the caller publishes it at once rather than waiting for the relay.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from core.scheduling.admission import Admitted, accept_pending, admit_queued_runs
from core.settings import Settings
from workers.clusters import sync_clusters

log = logging.getLogger("trainport.scheduler")


@dataclass(frozen=True)
class PassResult:
    accepted: int = 0
    admitted: list[Admitted] = field(default_factory=list)


def run_pass(
    factory: sessionmaker[Session], settings: Settings, run_ids: Sequence[str] | None = None
) -> PassResult:
    """Accept `run_ids` (every pending run when None) and admit whatever fits now."""
    sync_clusters(factory, settings)
    with session_scope(factory) as session:
        accepted = accept_pending(session, run_ids)
    with session_scope(factory) as session:
        admitted = admit_queued_runs(session, settings)
    if accepted or admitted:
        log.info("scheduler pass: %d accepted, %d admitted", accepted, len(admitted))
    return PassResult(accepted, admitted)

"""What the launch transaction prepares for an attempt, before its executor starts it.

Two things, both in the caller's transaction: the run's provenance record is frozen on its
first launch (core/provenance/service.py), and the attempt's TRAINPORT_* environment is built
with a run token minted for this attempt (core/runtime_env.py). workers/reconciler.py calls it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.code.snapshots import ShippedCode
from core.models import Run
from core.provenance.service import freeze
from core.runtime_env import attempt_environment
from core.settings import Settings


def freeze_and_mint_environment(
    session: Session, run: Run, attempt: int, settings: Settings, code: ShippedCode | None = None
) -> dict[str, str]:
    """Freeze the run's provenance (first launch only) and return the attempt's environment,
    whose TRAINPORT_RUN_TOKEN is minted here for `attempt`."""
    freeze(session, run, code)
    return attempt_environment(session, run, attempt, settings)

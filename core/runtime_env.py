"""The TRAINPORT_* environment a run's processes get at launch (docs/runtime-api.md, section 1).

Built in the launch transaction (core/launch.py, which first freezes the run's provenance): it
mints the attempt's run token, and names the run's checkpoint location and pinned datasets.

It holds no platform credential: no storage keys, signing key, database or broker
URL. The run token is the run's only credential; on S3 storage the run reaches its own prefixes
through the API's storage routes (api/routers/run_storage.py), which presign each request.
"""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from core.checkpoints.service import location
from core.datasets.pinning import pinned
from core.models import DatasetVersion, Run
from core.runs import run_tokens
from core.settings import Settings
from core.storage.backends import store_for_uri


def attempt_environment(
    session: Session, run: Run, attempt: int, settings: Settings
) -> dict[str, str]:
    """The attempt's TRAINPORT_* variables, with a run token minted for `attempt`."""
    versions = {name: version for name, (_, version) in pinned(session, run).items()}
    token = run_tokens.issue(settings.secret_key.get_secret_value(), run.id, attempt)
    return platform_environment(settings, run.org_id, run.id, attempt, token, versions)


def platform_environment(
    settings: Settings,
    org_id: str,
    run_id: str,
    attempt: int,
    token: str,
    datasets: dict[str, DatasetVersion],
) -> dict[str, str]:
    """The TRAINPORT_* variables of an attempt whose token is `token`, reading `datasets`
    (name -> pinned version); a plan passes a placeholder token (core/scheduling/preflight.py)."""
    pins = {
        name: {
            "digest": version.digest,
            "uri": store_for_uri(settings, org_id, version.uri, version.storage_key).uri(""),
        }
        for name, version in datasets.items()
    }
    return {
        "TRAINPORT_API_URL": settings.public_url.rstrip("/"),
        "TRAINPORT_RUN_ID": run_id,
        "TRAINPORT_ATTEMPT": str(attempt),
        "TRAINPORT_RUN_TOKEN": token,
        "TRAINPORT_CHECKPOINT_URI": location(settings, org_id, run_id).uri(""),
        "TRAINPORT_DATASETS": json.dumps(pins, sort_keys=True),
        "TRAINPORT_CACHE_DIR": str((settings.state_dir / "cache").resolve()),
    }

"""Outputs rules: where an attempt's outputs are stored, recording them, listing, reading.

An attempt's outputs live at `runs/<run id>/outputs/attempt-<n>/<path>` in the org's store,
one folder per attempt, so a retry never overwrites what a failed attempt left (often the very
files that say why it failed). Each file is recorded with the size and sha256 the platform
computed while uploading it; provenance lists them as `observed` (core/provenance/record.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.datasets.schemas import FileEntry
from core.errors import NotFound
from core.models import RunOutput, utcnow
from core.outputs.schemas import OutputFile, OutputList
from core.runs.service import get_run
from core.settings import Settings
from core.storage.backends import org_store
from core.storage.base import ObjectStore
from core.tenants.schemas import Principal

MAX_OUTPUT_FILES = 1000  # per attempt; the rest are named in the rank's log, not uploaded


def location(settings: Settings, org_id: str, run_id: str, attempt: int) -> ObjectStore:
    """Where an attempt's declared outputs are stored, in the org's store."""
    return org_store(settings, org_id).scoped(f"runs/{run_id}/outputs/attempt-{attempt}/")


def record(
    session: Session, org_id: str, run_id: str, attempt: int, files: list[FileEntry]
) -> None:
    """Record uploaded files; recording one twice (a repeated harvest) keeps the first."""
    if not files:
        return
    dialect = session.get_bind().dialect.name
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(RunOutput)
    rows = [
        {
            "run_id": run_id,
            "attempt": attempt,
            "path": f.path,
            "org_id": org_id,
            "size_bytes": f.size,
            "sha256": f.sha256,
            "created_at": utcnow(),
        }
        for f in files
    ]
    session.execute(statement.values(rows).on_conflict_do_nothing())


def of_run(session: Session, run_id: str, attempt: int | None = None) -> list[RunOutput]:
    """The run's recorded output files (of one attempt, if given), in attempt and path order."""
    query = select(RunOutput).where(RunOutput.run_id == run_id)
    if attempt is not None:
        query = query.where(RunOutput.attempt == attempt)
    return list(session.scalars(query.order_by(RunOutput.attempt, RunOutput.path)).all())


def listed(
    session: Session, caller: Principal, run_id: str, attempt: int | None
) -> tuple[str, list[RunOutput]]:
    """The run's org and its recorded outputs (one attempt's, or every attempt's)."""
    run = get_run(session, caller, run_id)
    return run.org_id, of_run(session, run.id, attempt)


def describe(settings: Settings, org_id: str, run_id: str, rows: list[RunOutput]) -> OutputList:
    """With download URLs: presigning is storage work, so no transaction need be open."""
    files = []
    for row in rows:
        store = location(settings, org_id, run_id, row.attempt)
        route = f"/v1/runs/{run_id}/outputs/{row.attempt}/files/{quote(row.path)}"
        url = store.presigned_url(row.path, settings.presigned_url_seconds) or route
        files.append(
            OutputFile(
                attempt=row.attempt,
                path=row.path,
                size=row.size_bytes,
                sha256=row.sha256,
                created_at=row.created_at,
                url=url,
            )
        )
    return OutputList(run_id=run_id, data=files)


def open_file(
    session: Session, caller: Principal, settings: Settings, run_id: str, attempt: int, path: str
) -> Iterator[bytes]:
    """A recorded output's bytes, for the API to stream."""
    run = get_run(session, caller, run_id)
    row = session.get(RunOutput, (run.id, attempt, path))
    if row is None:
        raise NotFound(f"Attempt {attempt} of run {run_id} has no output {path!r}.")
    return location(settings, run.org_id, run.id, attempt).iter_chunks(path)

"""Before an attempt launches: the code snapshot it runs.

Load (short transaction) → act (git and storage, no transaction open) → apply (short one):

- a `workdir` run runs the snapshot its spec names (checked at submit; still there);
- a `git` run runs the snapshot its first launch recorded in the provenance record, so every
  attempt runs the same commit; on the first launch the worker resolves the ref if the API could
  not, then reuses the snapshot of that commit its org already has or fetches exactly that commit
  and packs it (core/code/git.py) into a new one.

What it cannot get (an unreachable repository, a missing password secret) fails the run with
`system_error` and a message saying why, as a missing secret does.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.code import git, snapshots
from core.code.snapshots import ShippedCode
from core.db import read_sessions, session_scope
from core.errors import TrainportError
from core.launch_request import CodeToRun
from core.models import Run, RunProvenance
from core.provenance.record import shipped_digest
from core.runs.repository import BARE
from core.runs.states import RunStatus
from core.secrets.service import LaunchSecretsMissing, resolve_git_password
from core.settings import Settings


class CodeUnavailable(Exception):
    """The run's code cannot be had; the message says why (for the run's status)."""


@dataclass(frozen=True)
class _Plan:
    org_id: str
    spec: dict[str, Any]
    known: ShippedCode | None  # already a snapshot (workdir, or a launched git run)
    password: str | None


def code_for_launch(
    factory: sessionmaker[Session], settings: Settings, run_id: str
) -> tuple[ShippedCode, CodeToRun] | None:
    """The snapshot the run's next attempt runs, or None when it ships no code."""
    with session_scope(read_sessions(factory)) as session:  # reads: no write lock
        plan = _load(session, settings, run_id)
    if plan is None:
        return None
    shipped = plan.known or _from_git(factory, settings, plan)
    reader = functools.partial(_chunks, settings, plan.org_id, shipped.digest, factory)
    return shipped, CodeToRun(shipped.digest, plan.spec.get("working_dir"), reader)


def _load(session: Session, settings: Settings, run_id: str) -> _Plan | None:
    run = session.get(Run, run_id, options=BARE)
    if run is None or run.status != RunStatus.STARTING:
        return None  # moved on: the launch step says so, and nothing is fetched for it
    if not (run.spec.get("workdir") or run.spec.get("git")):
        return None
    spec = dict(run.spec)
    digest = spec.get("workdir") or shipped_digest(session.get(RunProvenance, run.id))
    if digest:
        row = snapshots.find(session, run.org_id, digest)
        if row is None:
            raise CodeUnavailable(f"code snapshot {digest} is no longer in the org's store")
        return _Plan(
            run.org_id, spec, ShippedCode.of(row, (spec.get("git") or {}).get("ref")), None
        )
    try:
        password = resolve_git_password(session, run, settings)
    except LaunchSecretsMissing as missing:
        raise CodeUnavailable(str(missing)) from None
    return _Plan(run.org_id, spec, None, password)


def _from_git(factory: sessionmaker[Session], settings: Settings, plan: _Plan) -> ShippedCode:
    named = plan.spec["git"]
    source = git.GitSource(
        named["url"], named.get("ref"), named.get("commit"), named.get("username") or "git",
        plan.password,
    )  # fmt: skip
    try:
        git.check_url(source.url, settings)
        commit = git.resolve(source, settings)
        with session_scope(factory) as session:
            cached = snapshots.for_git(session, plan.org_id, source.url, commit)
            if cached is not None:
                return ShippedCode.of(cached, source.ref)
        with git.packed(source, commit, settings) as archive, archive.open("rb") as stream:
            staged = snapshots.store_upload(settings, plan.org_id, _digest(archive), stream)
    except TrainportError as failed:
        raise CodeUnavailable(f"git source: {failed.detail}") from None
    with session_scope(factory) as session:
        row, created = snapshots.record(session, plan.org_id, staged, None, (source.url, commit))
        shipped = ShippedCode.of(row, source.ref)
    if not created:
        snapshots.discard(settings, plan.org_id, staged)
    return shipped


def _digest(archive: Any) -> str:

    digest = hashlib.sha256()
    with archive.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _chunks(settings: Settings, org_id: str, digest: str, factory: sessionmaker[Session]) -> Any:
    with session_scope(factory) as session:
        row = snapshots.find(session, org_id, digest)
        if row is None:
            raise CodeUnavailable(f"code snapshot {digest} is no longer in the org's store")
        session.expunge(row)
    return snapshots.chunks(settings, row)

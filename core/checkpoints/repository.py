"""Checkpoint queries: by run and step, newest first, and by COMMIT digest within an org."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Checkpoint


def locked(session: Session, run_id: str, step: int) -> Checkpoint | None:
    query = select(Checkpoint).where(Checkpoint.run_id == run_id, Checkpoint.step == step)
    return session.scalars(query.with_for_update()).first()


def of_run(session: Session, run_id: str) -> list[Checkpoint]:
    query = select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.step.desc())
    return list(session.scalars(query).all())


def at_step(session: Session, run_id: str, step: int) -> Checkpoint | None:
    return session.get(Checkpoint, (run_id, step))


def with_commit_sha(session: Session, org_id: str, run_id: str, sha256: str) -> Checkpoint | None:
    query = select(Checkpoint).where(
        Checkpoint.org_id == org_id, Checkpoint.run_id == run_id, Checkpoint.sha256 == sha256
    )
    return session.scalars(query).first()

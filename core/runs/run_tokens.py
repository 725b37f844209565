"""Run tokens: the credential a run's own processes use to talk back to the platform.

A token is `tpr_` + base64url("<run id>:<attempt>") + "." + base64url(HMAC-SHA256 over the same
text, under a key derived from TRAINPORT_SECRET_KEY). Nothing is stored: the signature proves the
platform issued it. It speaks for one attempt of one run, as a member of the run's project, and
only on the routes that accept a run caller (api/deps.py: RunCaller); it stops working once its
attempt has ended (`run_attempts.ended_at`), so also while the run waits, queued, for its next
attempt and `runs.attempt` still names the ended one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import NotFound, Unauthenticated
from core.models import Run, RunAttempt
from core.runs.states import RunStatus
from core.tenants.schemas import Principal, Role

TOKEN_PREFIX = "tpr_"  # noqa: S105 (a prefix, not a secret)
_PURPOSE = b"trainport/run-token/v1"


def _key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(secret_key: str, run_id: str, attempt: int) -> str:
    """The token of attempt `attempt` of run `run_id`; the same inputs give the same token."""
    subject = f"{run_id}:{attempt}".encode()
    signature = hmac.new(_key(secret_key), subject, hashlib.sha256).digest()
    return f"{TOKEN_PREFIX}{_b64(subject)}.{_b64(signature)}"


def looks_like_run_token(candidate: str | None) -> bool:
    return bool(candidate) and str(candidate).startswith(TOKEN_PREFIX)


def _subject(secret_key: str, token: str) -> tuple[str, int] | None:
    """(run id, attempt) of a genuine token, else None."""
    body, _, signature = token[len(TOKEN_PREFIX) :].partition(".")
    try:
        subject, given = _unb64(body), _unb64(signature)
    except (binascii.Error, ValueError):
        return None
    expected = hmac.new(_key(secret_key), subject, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        return None
    run_id, _, attempt = subject.decode(errors="replace").rpartition(":")
    return (run_id, int(attempt)) if attempt.isdigit() and run_id else None


def _live_run(session: Session, run_id: str, attempt: int) -> Run | None:
    """The run, if `attempt` is its current attempt and still open: one primary-key join."""
    query = (
        select(Run)
        .join(RunAttempt, (RunAttempt.run_id == Run.id) & (RunAttempt.attempt == Run.attempt))
        .where(Run.id == run_id, Run.attempt == attempt, RunAttempt.ended_at.is_(None))
    )
    return session.scalars(query).first()


def authenticate(session: Session, secret_key: str, token: str) -> Principal:
    """The run caller a token stands for; 401 if forged, or its attempt ended or was superseded."""
    subject = _subject(secret_key, token)
    run = _live_run(session, *subject) if subject else None
    if (
        subject is None
        or run is None
        or run.deleted_at is not None
        or RunStatus(run.status).is_terminal
    ):
        raise Unauthenticated(
            "This run token is not valid: its attempt has ended (or its run has finished)."
        )
    return Principal(
        org_id=run.org_id,
        key_id=f"run:{run.id}",
        role=Role.MEMBER,
        project_id=run.project_id,
        run_id=run.id,
        attempt=subject[1],
    )


def require_run(caller: Principal, run_id: str) -> None:
    """A run token reaches its own run only: any other run is exactly as missing."""
    if caller.run_id is not None and caller.run_id != run_id:
        raise NotFound(f"Run {run_id} was not found.")

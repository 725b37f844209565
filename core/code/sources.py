"""A run's code source at submit: the checks and the one resolution the API makes.

- `workdir`: the digest must name a snapshot of the caller's org (422 otherwise: upload first).
- `git`: the URL must be one the operator allows (core/code/git.py); when the spec pins no
  commit and names no password, the API resolves the ref to a commit now, so every attempt runs
  the same commit however the branch moves. A repository the API cannot reach now (or one that
  needs a password, which only the worker resolves) is resolved at the first launch instead; a
  ref the repository answers it does not have is a 422 now.
- `image` on a platform whose every cluster is local: refused when the operator set
  `TRAINPORT_LOCAL_IMAGE_POLICY=refuse` (otherwise the run is marked at admission).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.code import git, snapshots
from core.errors import FieldError, InvalidInput
from core.executor_kinds import LOCAL_CLUSTER
from core.models import Cluster
from core.runs.spec import RunCreate
from core.settings import LocalImagePolicy, Settings
from core.tenants.schemas import Principal

IMAGE_REFUSED = (
    "This platform runs commands on the local executor, which does not use `image` (it runs "
    "the command as processes on the host), and its operator refuses such runs "
    "(TRAINPORT_LOCAL_IMAGE_POLICY=refuse): remove `image` and ship the code with `workdir` "
    "or `git`."
)


def needs_checks(body: RunCreate, settings: Settings) -> bool:
    refusing = settings.local_image_policy is LocalImagePolicy.REFUSE and body.image is not None
    return body.workdir is not None or body.git is not None or refusing


def check_at_submit(
    session: Session, caller: Principal, settings: Settings, body: RunCreate
) -> RunCreate:
    """The body to store: checked, with `git.commit` resolved where the server can."""
    if settings.local_image_policy is LocalImagePolicy.REFUSE and body.image is not None:
        _refuse_local_image(session)
    if body.workdir is not None and snapshots.find(session, caller.org_id, body.workdir) is None:
        raise InvalidInput(
            f"Code snapshot {body.workdir} is not in this organisation's store: upload it "
            f"first (PUT /v1/code/{body.workdir}; the CLI and SDK do it for a folder).",
            [FieldError("/workdir", "unknown code snapshot")],
        ).with_code("code_snapshot_not_found")
    if body.git is not None:
        git.check_url(body.git.url, settings)
        session.commit()  # git talks to the network next: no transaction stays open across it
        return _resolved(body, settings)
    return body


def _refuse_local_image(session: Session) -> None:
    kinds = set(session.scalars(select(Cluster.executor)).all()) or {LOCAL_CLUSTER}
    if kinds == {LOCAL_CLUSTER}:
        raise InvalidInput(IMAGE_REFUSED, [FieldError("/image", "not used here")]).with_code(
            "image_not_supported"
        )


def _resolved(body: RunCreate, settings: Settings) -> RunCreate:
    spec = body.git
    assert spec is not None
    if spec.commit is not None or spec.password is not None:
        return body
    source = git.GitSource(spec.url, spec.ref)
    try:
        commit = git.resolve(source, settings)
    except git.RefNotFound as missing:
        raise InvalidInput(
            str(missing), [FieldError("/git/ref", "no such branch or tag")]
        ) from None
    except git.GitUnavailable:
        return body  # unreachable from here now: the worker resolves it at the first launch
    return body.completed(git=spec.model_copy(update={"commit": commit}))

"""Secret rules: admins write values for their org or one project; a launch resolves its own.

Values are write-only: nothing here returns one to a caller, and the only readers are
`resolve_for_launch`, which the worker calls in the launch transaction for the run's own org
(its project's value wins over the org-wide one), and `resolve_git_password`, for the worker's
own git fetch. A plan learns only which store keys a launch would use (`store_keys_for`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import Conflict, Forbidden, NotFound
from core.ids import new_id
from core.models import Run, RunSecret, utcnow
from core.secrets import repository
from core.secrets.encryption import SecretUnreadable, cipher_for
from core.secrets.schemas import LaunchSecrets, SecretCreate, SecretOut, SecretUpdate
from core.settings import Settings
from core.tenants.schemas import Principal, Role
from core.tenants.service import resolve_project

ORG_WIDE = ""  # the project_id of an org-wide secret


class LaunchSecretsMissing(Exception):
    """The run names a secret its org (and project) has not set, or one that cannot be read."""


def to_out(row: RunSecret) -> SecretOut:
    """A secret as the API shows it: everything but its value."""
    return SecretOut(
        name=row.name,
        project_id=row.project_id or None,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        created_by=row.created_by,
        updated_by=row.updated_by,
    )


def list_secrets(session: Session, caller: Principal, project: str | None) -> list[RunSecret]:
    """Any key of the org: names and versions (a project-scoped key: its project and org-wide)."""
    if project is not None:
        scopes: list[str] | None = [resolve_project(session, caller, project).id]
    elif caller.project_id is not None:
        scopes = [ORG_WIDE, caller.project_id]
    else:
        scopes = None
    return repository.list_for(session, caller.org_id, scopes)


def get_secret(session: Session, caller: Principal, name: str, project: str | None) -> RunSecret:
    """The named secret, org-wide or in `project`; 404 when there is none."""
    scope = resolve_project(session, caller, project).id if project else ORG_WIDE
    return _existing(session, caller.org_id, scope, name)


def create_secret(
    session: Session, caller: Principal, body: SecretCreate, settings: Settings
) -> RunSecret:
    """Store a new secret (its value encrypted), org-wide or in the body's project."""
    scope = _write_scope(session, caller, body.project)
    now = utcnow()
    row = RunSecret(
        id=new_id("sec"),
        org_id=caller.org_id,
        project_id=scope,
        name=body.name,
        ciphertext=cipher_for(settings).encrypt(caller.org_id, scope, body.name, body.value),
        version=1,
        created_by=caller.key_id,
        updated_by=caller.key_id,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise Conflict(
            f"Secret {body.name!r} already exists {_where(scope)}; PUT a new value to rotate it.",
            code="already_exists",
        ) from None
    return row


def rotate_secret(
    session: Session,
    caller: Principal,
    name: str,
    project: str | None,
    body: SecretUpdate,
    settings: Settings,
) -> RunSecret:
    """Replace the value (admin); runs launched from now on get the new one."""
    scope = _write_scope(session, caller, project)
    row = _existing(session, caller.org_id, scope, name, lock=True)
    row.ciphertext = cipher_for(settings).encrypt(caller.org_id, scope, name, body.value)
    row.version += 1
    row.updated_by = caller.key_id
    row.updated_at = utcnow()
    session.flush()
    return row


def delete_secret(session: Session, caller: Principal, name: str, project: str | None) -> None:
    """Delete the named secret, org-wide or in `project`."""
    scope = _write_scope(session, caller, project)
    session.delete(_existing(session, caller.org_id, scope, name, lock=True))
    session.flush()


def _write_scope(session: Session, caller: Principal, project: str | None) -> str:
    caller.require(Role.ADMIN)
    if project is not None:
        return resolve_project(session, caller, project).id
    if caller.project_id is not None:
        raise Forbidden(
            "This API key is limited to one project; org-wide secrets need an org-wide admin "
            "key (or name the key's project)."
        )
    return ORG_WIDE


def _existing(
    session: Session, org_id: str, scope: str, name: str, lock: bool = False
) -> RunSecret:
    row = repository.get(session, org_id, scope, name)
    if row is None:
        raise NotFound(f"Secret {name!r} was not found {_where(scope)}.")
    if lock:
        session.refresh(row, with_for_update=True)
    return row


def _where(scope: str) -> str:
    return f"in project {scope}" if scope else "org-wide"


# -- at launch (the worker) ---------------------------------------------------------------------


def secret_names(spec: dict[str, Any]) -> dict[str, str]:
    """Each env variable of a spec that names a secret -> the secret's name."""
    env = spec.get("env") or {}
    return {var: value["secret"] for var, value in env.items() if isinstance(value, dict)}


def resolve_for_launch(session: Session, run: Run, settings: Settings) -> LaunchSecrets:
    """The values `run` names, from its own org only: its project's over the org-wide ones."""
    wanted = secret_names(dict(run.spec))
    if not wanted:
        return LaunchSecrets()
    chosen = _choose(session, run.org_id, run.project_id, wanted)
    values = _decrypt(chosen, settings)
    keys = {name: store_key(row.project_id, name) for name, row in chosen.items()}
    live = frozenset(
        store_key(*entry) for entry in repository.scopes_and_names(session, run.org_id)
    )
    return LaunchSecrets(values, keys, live)


def store_keys_for(
    session: Session, org_id: str, project_id: str, spec: dict[str, Any]
) -> dict[str, str]:
    """Each secret a spec's env names -> its key in the org's store, as a launch would choose
    it now; no value is read (a plan shows the keys: core/scheduling/preflight_manifests.py).
    Raises LaunchSecretsMissing as the launch would."""
    wanted = secret_names(spec)
    chosen = _choose(session, org_id, project_id, wanted) if wanted else {}
    return {name: store_key(row.project_id, name) for name, row in chosen.items()}


def resolve_git_password(session: Session, run: Run, settings: Settings) -> str | None:
    """The token `git.password` names, for the worker's own git fetch (never the run's)."""
    password = ((run.spec.get("git") or {}).get("password")) or None
    if password is None:
        return None
    chosen = _choose(session, run.org_id, run.project_id, {"git.password": password["secret"]})
    return _decrypt(chosen, settings)[password["secret"]]


def _choose(
    session: Session, org_id: str, project_id: str, wanted: dict[str, str]
) -> dict[str, RunSecret]:
    """The row of each secret `wanted` (what needs it -> name) names, its project's over the
    org-wide one; raises LaunchSecretsMissing naming the first one the org has not set."""
    rows = repository.for_launch(session, org_id, project_id, sorted(set(wanted.values())))
    chosen: dict[str, RunSecret] = {}
    for row in sorted(rows, key=lambda r: r.project_id == project_id):  # project's last: wins
        chosen[row.name] = row
    for var, name in wanted.items():
        if name not in chosen:
            what = var if var.startswith("git.") else f"env {var}"
            raise LaunchSecretsMissing(
                f"{what} needs secret {name!r}, which the run's org has not set (for its "
                f"project or org-wide); an admin sets it with `trainport secrets set {name}`"
            )
    return chosen


def _decrypt(chosen: dict[str, RunSecret], settings: Settings) -> dict[str, str]:
    cipher = cipher_for(settings)
    try:
        return {
            name: cipher.decrypt(row.org_id, row.project_id, row.name, row.ciphertext)
            for name, row in chosen.items()
        }
    except SecretUnreadable as error:
        raise LaunchSecretsMissing(str(error)) from None


def store_key(project_id: str, name: str) -> str:
    """The entry of the org's store (its Kubernetes Secret) that holds one secret's value."""
    return f"{project_id or 'org'}.{name}"


LEGACY_PREFIX = "TRAINPORT_SECRET_"  # the old, global worker variables (before secrets per org)


def legacy_worker_variables(environ: dict[str, str]) -> list[str]:
    """`TRAINPORT_SECRET_<NAME>` variables a worker still has: no run reads them any more, and
    a value left in a worker's environment is one more place a run might reach it."""
    return sorted(
        name
        for name in environ
        if name.startswith(LEGACY_PREFIX) and name != "TRAINPORT_SECRET_KEY"
    )


def reencrypt_all(session: Session, settings: Settings) -> int:
    """Re-encrypt every stored value under the newest key (after adding one); how many."""
    cipher = cipher_for(settings)
    rows = repository.all_rows(session)
    for row in rows:
        row.ciphertext = cipher.reencrypt(row.ciphertext)
    session.flush()
    return len(rows)

"""Operator commands: `python -m api.admin migrate | bootstrap --org NAME | secrets-reencrypt |
keys rotate|list | clusters`.

`bootstrap` creates the first organisation, its `default` project and an admin key, and prints
the key once. It runs beside the API (same database), not through it: there is no key yet.
Where the embedded platform cannot sandbox its runs (core/sandbox.py) it creates one
organisation only, and says why when asked for a second.
Every command that uses the database finds it as the server does (core/settings.py: the
`TRAINPORT_*` variables, `--database-url`, else `<state dir>/trainport.db`, with `--state-dir`
as for `trainport server`), says on stderr which database that is, and refuses one that is
missing or not migrated with how to fix it, without creating it (unless `--migrate`).
`keys rotate --dir D` writes a new provenance signing key to D/signing-key.pem and keeps the one
it replaces as a retired public key in D; `keys list` prints the keys this configuration signs
and verifies with. `clusters` prints the inventory: each registered cluster, its executor, its
Kubernetes server version and what it holds, marking versions Trainport does not support.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from core import db, migrate, sandbox
from core.errors import TrainportError
from core.provenance import rotation, signing
from core.provenance.service import keyring
from core.scheduling.clusters import list_clusters, version_problem
from core.secrets.service import reencrypt_all
from core.settings import Settings, get_settings
from core.tenants.service import bootstrap, refuse_another_org

SCHEMA_FIX = (
    "A server started with `trainport server --state-dir DIR` keeps its database in "
    "DIR/trainport.db: give this command the server's --state-dir (or the same "
    "TRAINPORT_STATE_DIR / TRAINPORT_DATABASE_URL). To create or upgrade this database instead, "
    "run `python -m api.admin migrate` with the same options, or add --migrate."
)


def _database_origin(args: argparse.Namespace) -> str:
    if args.database_url:
        return "from --database-url"
    if os.environ.get("TRAINPORT_DATABASE_URL"):
        return "from TRAINPORT_DATABASE_URL"
    if args.state_dir:
        return "in the state folder given by --state-dir"
    if os.environ.get("TRAINPORT_STATE_DIR"):
        return "in the state folder TRAINPORT_STATE_DIR names"
    return "in the default state folder, ./.trainport of the current directory"


def _settings(args: argparse.Namespace) -> Settings:
    """The settings the server resolves from the same options, and which database they name."""
    overrides: dict[str, Any] = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.state_dir:
        overrides["state_dir"] = Path(args.state_dir)
    settings = Settings(**overrides) if overrides else get_settings()
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    print(f"database: {shown} ({_database_origin(args)})", file=sys.stderr)
    return settings


def _schema_ready(settings: Settings, migrate_first: bool) -> bool:
    """Migrate when asked; else whether the schema is current, saying how to fix it if not."""
    if migrate_first:
        migrate.upgrade(settings.database_url)
        return True
    problem = migrate.schema_problem(settings.database_url)
    if problem is not None:
        print(f"error: this database cannot be used: {problem}.\n{SCHEMA_FIX}", file=sys.stderr)
    return problem is None


def _migrate(args: argparse.Namespace) -> int:
    migrate.upgrade(_settings(args).database_url)
    print("database is at the latest schema")
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not _schema_ready(settings, args.migrate):
        return 1
    engine = db.build_engine(settings)
    try:
        with db.session_scope(db.make_sessionmaker(engine)) as session:
            # Unsandboxed runs could read every org's data: then one org only.
            refuse_another_org(session, sandbox.single_organisation_reason(settings))
            made = bootstrap(session, args.org)
    except TrainportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.json:
        print(
            json.dumps(
                {"org_id": made.org.id, "project_id": made.project.id, "api_key": made.secret}
            )
        )
    else:
        print(f"organisation {args.org} ({made.org.id}), project default ({made.project.id})")
        print(f"admin API key (shown once, keep it safe): {made.secret}")
    return 0


def _secrets_reencrypt(args: argparse.Namespace) -> int:
    """After a new key was put first in TRAINPORT_SECRETS_KEY: every value under it."""
    settings = _settings(args)
    if not _schema_ready(settings, migrate_first=False):
        return 1
    engine = db.build_engine(settings)
    try:
        with db.session_scope(db.make_sessionmaker(engine)) as session:
            count = reencrypt_all(session, settings)
    finally:
        engine.dispose()
    print(f"re-encrypted {count} secret value(s) under the newest key")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    try:
        done = rotation.rotate(Path(args.dir), get_settings())
    except (signing.KeyFileError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"new signing key {done.new_key_id} in {done.signing_key_file}")
    if done.retired_key_id:
        print(f"retired key {done.retired_key_id} kept in {args.dir} to verify older records")
    print(
        f"set TRAINPORT_SIGNING_KEY_FILE={done.signing_key_file} and "
        f'TRAINPORT_VERIFICATION_KEY_FILES=["{args.dir}"] on the API, then restart it'
    )
    return 0


def _clusters(args: argparse.Namespace) -> int:
    engine = db.build_engine(get_settings())
    try:
        with db.session_scope(db.make_sessionmaker(engine)) as session:
            rows = [
                {
                    "name": c.name,
                    "executor": c.executor,
                    "server_version": c.server_version,
                    "inventory": c.inventory,
                    "unsupported": version_problem(c.server_version),
                }
                for c in list_clusters(session)
            ]
    finally:
        engine.dispose()
    for row in rows:
        if args.json:
            print(json.dumps(row))
            continue
        line = f"{row['name']}  {row['executor']}  {row['server_version'] or '-'}  "
        line += json.dumps(row["inventory"], sort_keys=True)
        print(line + (f"  UNSUPPORTED: {row['unsupported']}" if row["unsupported"] else ""))
    return 0


def _list_keys(_: argparse.Namespace) -> int:
    try:
        ring = keyring(get_settings())
    except (signing.KeyFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key_id in sorted(ring.verifiers, key=lambda k: k != ring.signer_id):
        print(f"{key_id} {'signing' if key_id == ring.signer_id else 'retired'}")
    return 0


def _add_keys(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="provenance signing keys")
    actions = keys.add_subparsers(dest="action", required=True)
    rotate = actions.add_parser("rotate", help="new signing key; keep the old one to verify")
    rotate.add_argument("--dir", required=True, help="key folder (e.g. a mounted Secret)")
    rotate.set_defaults(func=_rotate)
    actions.add_parser("list", help="the keys this server signs and verifies with").set_defaults(
        func=_list_keys
    )


def _database_options() -> argparse.ArgumentParser:
    """--state-dir and --database-url, as `trainport server` takes them."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--state-dir", help="the server's state folder (its database is DIR/trainport.db)"
    )
    options.add_argument("--database-url", help="SQLAlchemy URL; beats --state-dir")
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    database = [_database_options()]
    commands.add_parser(
        "migrate", help="upgrade the database schema", parents=database
    ).set_defaults(func=_migrate)
    boot = commands.add_parser(
        "bootstrap", help="create an org, its default project, an admin key", parents=database
    )
    boot.add_argument("--org", required=True, help="organisation name (a DNS label)")
    boot.add_argument("--json", action="store_true", help="machine-readable output")
    boot.add_argument("--migrate", action="store_true", help="upgrade the schema first")
    boot.set_defaults(func=_bootstrap)
    rekey = commands.add_parser(
        "secrets-reencrypt",
        help="re-encrypt every run secret under the newest secrets key",
        parents=database,
    )
    rekey.set_defaults(func=_secrets_reencrypt)
    _add_keys(commands)
    listing = commands.add_parser("clusters", help="the inventory: clusters, versions, capacity")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_clusters)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

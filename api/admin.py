"""Operator commands: `python -m api.admin migrate | bootstrap --org NAME | secrets-reencrypt |
keys rotate|list | clusters`.

`bootstrap` creates the first organisation, its `default` project and an admin key, and prints
the key once. It runs beside the API (same database), not through it: there is no key yet.
Where the embedded platform cannot sandbox its runs (core/sandbox.py) it creates one
organisation only, and says why when asked for a second.
`keys rotate --dir D` writes a new provenance signing key to D/signing-key.pem and keeps the one
it replaces as a retired public key in D; `keys list` prints the keys this configuration signs
and verifies with. `clusters` prints the inventory: each registered cluster, its executor, its
Kubernetes server version and what it holds, marking versions Trainport does not support.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core import db, migrate, sandbox
from core.errors import TrainportError
from core.provenance import rotation, signing
from core.provenance.service import keyring
from core.scheduling.clusters import list_clusters, version_problem
from core.secrets.service import reencrypt_all
from core.settings import get_settings
from core.tenants.service import bootstrap, refuse_another_org


def _migrate(_: argparse.Namespace) -> int:
    migrate.upgrade(get_settings().database_url)
    print("database is at the latest schema")
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.migrate:
        migrate.upgrade(settings.database_url)
    engine = db.build_engine(settings)
    try:
        with db.session_scope(db.make_sessionmaker(engine)) as session:
            # Unsandboxed runs could read every org's data: then one org only (issue 12).
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


def _secrets_reencrypt(_: argparse.Namespace) -> int:
    """After a new key was put first in TRAINPORT_SECRETS_KEY: every value under it."""
    settings = get_settings()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="upgrade the database schema").set_defaults(func=_migrate)
    boot = commands.add_parser("bootstrap", help="create an org, its default project, an admin key")
    boot.add_argument("--org", required=True, help="organisation name (a DNS label)")
    boot.add_argument("--json", action="store_true", help="machine-readable output")
    boot.add_argument("--migrate", action="store_true", help="upgrade the schema first")
    boot.set_defaults(func=_bootstrap)
    rekey = commands.add_parser(
        "secrets-reencrypt", help="re-encrypt every run secret under the newest secrets key"
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

"""Seed the benchmark database fast: a fresh `trainport_bench`, migrated, bootstrapped, and filled.

Runs are written by two set-based SQL statements (`INSERT ... SELECT FROM generate_series`), not
through the API, so 1M runs take well under a minute. The rows are what the API itself writes:
`run_` + 26 lower-case Crockford characters whose 10-character time prefix strictly increases
with the row number (ULID order = creation order), one resource_version per row taken from the
`runs` version counter (which is set to the maximum afterwards), label rows beside the JSON
labels, and a spec document produced by the real `RunCreate` model.

Shape of the data: 20 organisations. 90% of the runs belong to the measured org (`bench`), spread
over its 5 projects, so its lists and feeds are read at realistic depth; every 10th run belongs to
one of the 19 other orgs, which makes every query's org filter matter. The newest 2,000 runs are
active (pending, queued, starting, running), older ones finished (70% succeeded, 20% failed, 10%
cancelled). Labels: `team` (one of 6 values) and `exp` (one of 500). Run events are not seeded:
no measured endpoint reads them.

    python -m bench.seed --runs 100000        # prints the seed's facts as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass

import psycopg
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from core import migrate
from core.db import make_sessionmaker, session_scope
from core.ids import new_id
from core.models import Organization, Project
from core.runs.spec import RunCreate
from core.tenants.schemas import ApiKeyCreate, Principal, Role
from core.tenants.service import bootstrap, create_key

ADMIN_URL = os.environ.get(
    "TRAINPORT_BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BENCH_DB = "trainport_bench"
MEASURED_ORG = "bench"
ORGS = 20
PROJECTS = ("default", "vision", "nlp", "speech", "rl")
TEAMS = ("nlp", "vision", "speech", "rl", "infra", "research")
ACTIVE_RUNS = 2000
STEP_MS = 1000  # one run per second of history: 1M runs reach back ~11.6 days
CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


@dataclass(frozen=True)
class Seeded:
    database_url: str
    runs: int
    measured_runs: int
    org_id: str
    other_org_id: str
    api_key: str
    project_ids: list[str]
    head_version: int
    seconds: float


def dsn(url: str) -> str:
    """A SQLAlchemy URL as the plain libpq DSN psycopg takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_url(name: str = BENCH_DB) -> str:
    """The benchmark database's SQLAlchemy URL."""
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def recreate_database(name: str = BENCH_DB) -> str:
    """Drop and create the benchmark database; returns its SQLAlchemy URL."""
    with psycopg.connect(dsn(ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(name)


def _crockford(expr: str, chars: int) -> str:
    """SQL text: the low `5 * chars` bits of the bigint `expr` as Crockford base32, big-endian."""
    return " || ".join(
        f"substr('{CROCKFORD}', ((({expr}) >> {5 * k}) & 31)::int + 1, 1)"
        for k in reversed(range(chars))
    )


RUNS_SQL = f"""
INSERT INTO runs (id, org_id, project_id, name, spec, status, status_reason, priority, attempt,
                  labels, resource_version, created_by, created_at, updated_at, queued_at,
                  started_at, finished_at)
SELECT 'run_' || {_crockford("v.ts", 10)} || {_crockford("v.r1", 8)} || {_crockford("v.r2", 8)},
       v.org_id, v.project_id, v.name,
       %(spec)s::jsonb || jsonb_build_object(
           'name', v.name, 'labels', v.labels,
           'scheduling', (%(spec)s::jsonb -> 'scheduling')
                         || jsonb_build_object('priority', v.priority)),
       v.status,
       CASE v.status WHEN 'pending' THEN 'submitted' WHEN 'queued' THEN 'queued_for_capacity'
            WHEN 'starting' THEN 'launching' WHEN 'running' THEN 'running'
            WHEN 'succeeded' THEN 'completed' WHEN 'cancelled' THEN 'user_cancelled'
            ELSE 'exit_code_nonzero' END,
       v.priority, 0, v.labels, %(base_version)s + v.i, v.created_by,
       v.created_at, v.created_at + interval '1 hour',
       CASE WHEN v.status <> 'pending' THEN v.created_at + interval '1 second' END,
       CASE WHEN v.status NOT IN ('pending', 'queued')
            THEN v.created_at + interval '30 seconds' END,
       CASE WHEN v.status IN ('succeeded', 'failed', 'cancelled')
            THEN v.created_at + interval '1 hour' END
FROM generate_series(1, %(n)s) AS g(i)
CROSS JOIN LATERAL (
    SELECT g.i AS i,
           %(base_ms)s + g.i * {STEP_MS} AS ts,
           (random() * 1099511627775)::bigint AS r1,
           (random() * 1099511627775)::bigint AS r2,
           to_timestamp((%(base_ms)s + g.i * {STEP_MS}) / 1000.0) AS created_at,
           CASE WHEN g.i %% 10 = 0 THEN (%(other_orgs)s::text[])[1 + (g.i / 10) %% %(others)s]
                ELSE %(org_id)s END AS org_id,
           CASE WHEN g.i %% 10 = 0 THEN (%(other_projects)s::text[])[1 + (g.i / 10) %% %(others)s]
                ELSE (%(projects)s::text[])[1 + g.i %% {len(PROJECTS)}] END AS project_id,
           CASE WHEN g.i %% 10 = 0 THEN NULL ELSE %(key_id)s END AS created_by,
           (%(teams)s::text[])[1 + g.i %% {len(TEAMS)}] || '-exp-' || g.i AS name,
           jsonb_build_object('team', (%(teams)s::text[])[1 + g.i %% {len(TEAMS)}],
                              'exp', 'e' || (g.i %% 500)) AS labels,
           CASE g.i %% 10 WHEN 0 THEN 'high' WHEN 1 THEN 'low' WHEN 2 THEN 'low'
                ELSE 'normal' END AS priority,
           CASE WHEN g.i > %(n)s - {ACTIVE_RUNS}
                THEN (ARRAY['pending', 'queued', 'starting', 'running'])[1 + g.i %% 4]
                WHEN g.i %% 20 < 14 THEN 'succeeded'
                WHEN g.i %% 20 < 18 THEN 'failed'
                ELSE 'cancelled' END AS status
) AS v
"""

LABELS_SQL = """
INSERT INTO run_labels (run_id, key, org_id, value)
SELECT r.id, l.key, r.org_id, l.value
FROM runs AS r CROSS JOIN LATERAL jsonb_each_text(r.labels) AS l
"""


def _spec_template() -> str:
    body = RunCreate(
        image="ghcr.io/acme/trainer:1.4",
        command=["python", "train.py", "--config", "configs/base.yaml"],
        env={"WANDB_PROJECT": "bench", "HF_TOKEN": {"secret": "hf-token"}},
        compute={"nodes": 2, "gpus_per_node": 8, "gpu_type": "h100", "memory": "512Gi"},
        scheduling={"max_duration": "12h", "max_retries": 2},
        data={"datasets": ["s3://datasets/corpus-v3"]},
        checkpoint={"every_steps": 1000},
    )
    return json.dumps(body.model_dump(mode="json", exclude={"project"}))


@dataclass(frozen=True)
class Tenants:
    org_id: str
    key_id: str
    api_key: str
    projects: list[str]
    other_orgs: list[str]
    other_projects: list[str]


def _tenants(url: str) -> Tenants:
    """The measured org (with its projects) and the other orgs, made the way operators do."""
    engine = create_engine(url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            made = bootstrap(session, MEASURED_ORG)
            projects = [made.project.id]
            for name in PROJECTS[1:]:
                project = Project(id=new_id("prj"), org_id=made.org.id, name=name)
                session.add(project)
                projects.append(project.id)
            others = [bootstrap(session, f"other-{i:02d}") for i in range(1, ORGS)]
    finally:
        engine.dispose()
    return Tenants(
        org_id=made.org.id,
        key_id=made.key.id,
        api_key=made.secret,
        projects=projects,
        other_orgs=[o.org.id for o in others],
        other_projects=[o.project.id for o in others],
    )


def measured_org_key(url: str, key_name: str) -> tuple[str, str]:
    """The measured org of an earlier seed, and a fresh admin key of it (for `--reuse`)."""
    engine = create_engine(url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            org = session.scalars(select(Organization).where(Organization.name == MEASURED_ORG))
            org_id = org.one().id
            admin = Principal(org_id, MEASURED_ORG, Role.ADMIN)
            _, secret = create_key(session, admin, ApiKeyCreate(name=key_name, role="admin"))
    finally:
        engine.dispose()
    return org_id, secret


def _fill(url: str, runs: int, tenants: Tenants) -> tuple[int, int]:
    """Insert the runs and their label rows; returns (head version, runs in the measured org)."""
    with psycopg.connect(dsn(url)) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        base = conn.execute("SELECT value FROM version_counters WHERE name = 'runs'").fetchone()
        params = {
            **asdict(tenants),
            "n": runs,
            "others": ORGS - 1,
            "teams": list(TEAMS),
            "spec": _spec_template(),
            "base_version": base[0] if base else 0,
            "base_ms": int(time.time() * 1000) - (runs + 60) * STEP_MS,
        }
        conn.execute(RUNS_SQL, params)
        conn.execute(LABELS_SQL)
        conn.execute(
            "UPDATE version_counters SET value = (SELECT max(resource_version) FROM runs) "
            "WHERE name = 'runs'"
        )
        head = conn.execute("SELECT value FROM version_counters WHERE name = 'runs'").fetchone()
        measured = conn.execute(
            "SELECT count(*) FROM runs WHERE org_id = %s", [tenants.org_id]
        ).fetchone()
    return (int(head[0]) if head else 0), (int(measured[0]) if measured else 0)


def seed(runs: int) -> Seeded:
    """A fresh benchmark database holding `runs` runs; VACUUM ANALYZEd and ready to serve."""
    started = time.perf_counter()
    url = recreate_database()
    migrate.upgrade(url)
    tenants = _tenants(url)
    head, measured = _fill(url, runs, tenants)
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        # As the README advises for production on SSDs (docker-compose.yml sets it too).
        conn.execute(f'ALTER DATABASE "{BENCH_DB}" SET random_page_cost = 1.1')
        conn.execute("VACUUM ANALYZE")  # stats for the planner, visibility map for index scans
    return Seeded(
        database_url=url,
        runs=runs,
        measured_runs=measured,
        org_id=tenants.org_id,
        other_org_id=tenants.other_orgs[0],
        api_key=tenants.api_key,
        project_ids=tenants.projects,
        head_version=head,
        seconds=time.perf_counter() - started,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="how many runs to store")
    seeded = seed(parser.parse_args().runs)
    print(json.dumps(asdict(seeded) | {"api_key": seeded.api_key[:13] + "..."}, indent=2))


if __name__ == "__main__":
    main()

"""Two scheduler processes racing over 500 queued runs never exceed a quota or a cluster.

Each process loops: one admission pass, check the ledger, finish a few admitted runs, check
again, until the queue is empty. The checks read every open grant in one statement, so each
sees one committed state; afterwards a sweep over every attempt's [admitted, ended) interval
checks the limits at every admission instant of the whole history.
"""

from __future__ import annotations

import multiprocessing
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core import db
from core.models import Run, RunAttempt
from core.runs.attempts import AttemptOutcome, Ending, settle
from core.runs.service import create_run
from core.runs.spec import RunCreate
from core.runs.states import RunStatus, StatusReason
from core.scheduling import quotas
from core.scheduling.admission import accept_pending, admit_queued_runs
from core.scheduling.clusters import Inventory, register_cluster
from core.scheduling.schemas import QuotaIn
from core.settings import Settings
from core.tenants.schemas import Principal, Role
from core.tenants.service import bootstrap

RUNS = 500
CLUSTER_GPUS = 24
QUOTA_GPUS, QUOTA_RUNS = 16, 6


def _seed(factory: sessionmaker[Session]) -> str:
    """Two orgs, 250 queued runs each (1-4 GPUs); only the first has a quota. Its org id."""
    rng = random.Random(7)
    with db.session_scope(factory) as session:
        register_cluster(session, "race", "local", Inventory({"a100": CLUSTER_GPUS}, None, 1))
        limited, free = (bootstrap(session, f"race-{name}") for name in ("limited", "free"))
        for made in (limited, free):
            caller = Principal(made.org.id, made.key.id, Role.ADMIN)
            for _ in range(RUNS // 2):
                compute = {"gpus_per_node": rng.randint(1, 4), "gpu_type": "a100"}
                create_run(session, caller, RunCreate(command=["true"], compute=compute))
        admin = Principal(limited.org.id, limited.key.id, Role.ADMIN)
        body = QuotaIn(max_gpus=QUOTA_GPUS, max_running_runs=QUOTA_RUNS)
        quotas.set_quota(session, admin, limited.org.id, body)
        accept_pending(session)
        return limited.org.id


def ledger_violations(factory: sessionmaker[Session], org_id: str) -> list[str]:
    """What the open grants (one statement, one snapshot) hold beyond any limit."""
    with db.session_scope(factory) as session:
        held = session.execute(
            select(RunAttempt.org_id, func.sum(RunAttempt.gpus), func.count())
            .where(RunAttempt.ended_at.is_(None))
            .group_by(RunAttempt.org_id)
        ).all()
    total = sum(int(gpus) for _, gpus, _ in held)
    found = [f"cluster holds {total} GPUs"] if total > CLUSTER_GPUS else []
    for org, gpus, runs in held:
        if org == org_id and (gpus > QUOTA_GPUS or runs > QUOTA_RUNS):
            found.append(f"quota org holds {gpus} GPUs in {runs} runs")
    return found


def _finish_some(factory: sessionmaker[Session], rng: random.Random) -> int:
    ending = Ending(AttemptOutcome.SUCCEEDED, StatusReason.COMPLETED, "done")
    with db.session_scope(factory) as session:
        started = session.scalars(
            select(Run)
            .where(Run.status == RunStatus.STARTING.value)
            .limit(rng.randint(1, 4))
            .with_for_update(skip_locked=True)
        ).all()
        for run in started:
            settle(session, run, ending, 0)
        return len(started)


def _remaining(factory: sessionmaker[Session]) -> int:
    with db.session_scope(factory) as session:
        active = [RunStatus.QUEUED.value, RunStatus.STARTING.value]
        return int(session.scalar(select(func.count()).where(Run.status.in_(active))) or 0)


def scheduler_process(url: str, org_id: str, seed: int, results: Any) -> None:
    """One racing scheduler: admit, check, finish a few, check, until nothing is left."""
    engine = db.build_engine(Settings(database_url=url))
    factory, rng = db.make_sessionmaker(engine), random.Random(seed)
    settings, checks, violations = Settings(database_url=url), 0, []
    while _remaining(factory):
        with db.session_scope(factory) as session:
            admit_queued_runs(session, settings)
        violations += ledger_violations(factory, org_id)
        _finish_some(factory, rng)
        violations += ledger_violations(factory, org_id)
        checks += 2
    engine.dispose()
    results.put((checks, violations))


def peak_holdings(factory: sessionmaker[Session], org_id: str) -> tuple[int, int, int]:
    """Over the whole history: the most GPUs held on the cluster, and by the quota org."""
    with db.session_scope(factory) as session:
        attempts = session.scalars(select(RunAttempt)).all()
        events = sorted(
            [(a.ended_at, 0, -a.gpus, a.org_id) for a in attempts if a.ended_at]
            + [(a.admitted_at, 1, a.gpus, a.org_id) for a in attempts]
        )  # at equal instants releases come first: they happened before the read
    held: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    peak_cluster = peak_org = peak_runs = 0
    for _, _, gpus, org in events:
        held[org] += gpus
        counts[org] += 1 if gpus > 0 else -1
        peak_cluster = max(peak_cluster, sum(held.values()))
        peak_org, peak_runs = max(peak_org, held[org_id]), max(peak_runs, counts[org_id])
    return peak_cluster, peak_org, peak_runs


def test_two_racing_schedulers_never_exceed_a_quota_or_a_cluster(
    make_database: Callable[[], str],
) -> None:
    url = make_database()
    engine = db.build_engine(Settings(database_url=url))
    factory = db.make_sessionmaker(engine)
    org_id = _seed(factory)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    racers = [
        context.Process(target=scheduler_process, args=(url, org_id, seed, results))
        for seed in (1, 2)
    ]
    for racer in racers:
        racer.start()
    outcomes = [results.get(timeout=100) for _ in racers]
    for racer in racers:
        racer.join(timeout=10)
    assert all(checks > 0 for checks, _ in outcomes)
    assert [violations for _, violations in outcomes] == [[], []]
    peak_cluster, peak_org, peak_runs = peak_holdings(factory, org_id)
    assert peak_cluster <= CLUSTER_GPUS
    assert peak_org <= QUOTA_GPUS
    assert peak_runs <= QUOTA_RUNS
    with db.session_scope(factory) as session:
        statuses = session.scalars(select(Run.status)).all()
    assert statuses.count("succeeded") == RUNS
    engine.dispose()

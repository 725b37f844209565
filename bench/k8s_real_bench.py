"""Reconciler CPU per pass with N live runs on a real kube-apiserver (issue 13).

The control plane of tests/k8s_real (etcd, kube-apiserver 1.20.2 and kube-controller-manager,
RBAC from k8s/rbac.yaml, the worker acting with its ServiceAccount's token) and its kubelet
stand-in, on a throwaway PostgreSQL database. `--runs` single-node runs are submitted through
the API, admitted by the scheduler and launched by the reconciler's launch path (a Job and a
Service each, created by the worker's identity; the real Job controller makes the pods, the
stand-in binds and starts them). Once every run is `running`, `--passes` reconcile passes run
back to back, as beat would fire them; each one is timed for wall clock, for the CPU of the
thread that runs it (`time.thread_time`: the pass itself; the mirrors' watch threads and the
log followers run beside it), and for the requests the executor's mirrors made during it.

Usage: .venv/bin/python -m bench.k8s_real_bench [--runs 1000] [--passes 20]
Needs the binaries of scripts/kube-binaries.sh and PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from core import migrate  # noqa: E402
from core.db import session_scope  # noqa: E402
from core.models import Run  # noqa: E402
from tests.factories import create_run, make_tenant  # noqa: E402
from tests.k8s_real.control_plane import ControlPlane, kube_bin  # noqa: E402
from tests.k8s_real.harness import (  # noqa: E402
    NAMESPACE,
    Plane,
    install_trainport,
    new_executor,
    real_settings,
)
from tests.k8s_real.kubelet import Kubelet  # noqa: E402
from tests.support.postgres import ADMIN_URL  # noqa: E402
from workers import scheduler  # noqa: E402
from workers.executors.base import Executor  # noqa: E402
from workers.executors.registry import Where  # noqa: E402
from workers.reconciler import WorkerContext, launch_attempt, reconcile_once  # noqa: E402


def _admin(sql: str) -> None:
    dsn = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


def start_plane(work: Path) -> Plane:
    bin_dir = kube_bin()
    if bin_dir is None:
        sys.exit("no kube-apiserver binaries: run `bash scripts/kube-binaries.sh` first")
    control = ControlPlane(bin_dir, work)
    try:
        control.start()
        token = install_trainport(control)
    except BaseException:
        control.stop()  # nothing left running when the plane cannot start
        raise
    kubelet = Kubelet(control.client(), NAMESPACE, control.pki)
    kubelet.default.exit_code = None  # every run stays running
    kubelet.add_node("node-a")
    kubelet.start()
    return Plane(control, kubelet, control.kubeconfig("worker", token), token)


def launch_all(api: TestClient, ctx: WorkerContext, runs: int) -> tuple[list[str], float]:
    tenant = make_tenant(api)
    ids = [
        str(create_run(api, tenant, compute={"nodes": 1}, scheduling={})["id"]) for _ in range(runs)
    ]
    started = time.perf_counter()
    pending = set(ids)
    while pending:
        for admitted in scheduler.run_pass(ctx.factory, ctx.settings).admitted:
            launch_attempt(ctx, admitted.run_id, admitted.attempt)
        reconcile_once(ctx)
        with session_scope(ctx.factory) as session:
            running = {r for (r,) in session.query(Run.id).filter(Run.status == "running")}
        pending -= running
        print(f"  {runs - len(pending)}/{runs} running", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return ids, time.perf_counter() - started


def measure(ctx: WorkerContext, executor: Any, passes: int) -> dict[str, Any]:
    walls, cpus, calls = [], [], []
    for _ in range(passes):
        before_calls = executor.jobs.calls + executor.pods.calls
        wall, cpu = time.perf_counter(), time.thread_time()
        summary = reconcile_once(ctx)
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
        calls.append(executor.jobs.calls + executor.pods.calls - before_calls)
        assert (summary.settled, summary.orphans) == (0, 0), summary  # all still running
        time.sleep(0.2)

    def ms(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return {
            "median_ms": round(statistics.median(values) * 1000, 1),
            "p95_ms": round(p95 * 1000, 1),
        }

    observe_cpu = []
    for _ in range(passes):
        cpu = time.thread_time()
        executor.observe()
        observe_cpu.append(time.thread_time() - cpu)
    return {
        "pass_wall": ms(walls),
        "pass_cpu": ms(cpus),
        "observe_cpu": ms(observe_cpu),
        "mirror_requests_per_pass": max(calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args()
    name = f"trainport_k8sbench_{secrets.token_hex(4)}"
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    _admin(f'CREATE DATABASE "{name}"')
    work = Path(tempfile.mkdtemp(prefix="k8s-real-bench-"))
    try:
        plane = start_plane(work / "kube")
    except BaseException:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        raise
    try:
        migrate.upgrade(url)
        settings = real_settings(plane, url, work / "state", watch_timeout=300)
        app = create_app(settings)
        api = TestClient(app, raise_server_exceptions=False)
        executor = new_executor(settings)

        def executors(where: Where) -> Executor:
            return executor

        ctx = WorkerContext(app.state.sessionmaker, settings, executors)
        _, launched = launch_all(api, ctx, args.runs)
        result = {"runs": args.runs, "launch_to_all_running_s": round(launched, 1)}
        result.update(measure(ctx, executor, args.passes))
        print(json.dumps(result, indent=2))
        executor.stop()
        app.state.engine.dispose()
    finally:
        plane.kubelet.stop()
        plane.control.stop()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Whether runs are sandboxed is said at start, in /readyz, and enforced by the operator tools.

"Without the means" is made real by a PATH with no `bwrap` on it (the detection looks the
program up on PATH), so these tests run anywhere; the sandboxed cases need bwrap and root or
user namespaces, and skip where this machine has neither.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core import migrate
from core.sandbox import detect
from core.settings import SandboxMode, Settings

ROOT = Path(__file__).resolve().parents[2]
NO_BWRAP_PATH = str(Path(sys.executable).parent)  # the venv's bin: python, no bwrap
needs_bwrap = pytest.mark.skipif(
    not detect(SandboxMode.AUTO).available, reason="this machine cannot run bubblewrap"
)


def _env(database_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env["TRAINPORT_DATABASE_URL"] = database_url
    env.update({f"TRAINPORT_{k.upper()}": v for k, v in settings.items()})
    return env


def _bootstrap(env: dict[str, str], org: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.admin", "bootstrap", "--org", org],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'trainport.db'}"
    migrate.upgrade(url)
    return url


def test_without_bubblewrap_a_second_organisation_is_refused_and_says_why(
    sqlite_db: str, tmp_path: Path
) -> None:
    env = _env(sqlite_db, state_dir=str(tmp_path / "state")) | {"PATH": NO_BWRAP_PATH}

    first = _bootstrap(env, "first")
    second = _bootstrap(env, "second")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 1
    assert "one organisation" in second.stderr
    assert "bubblewrap" in second.stderr


def test_with_the_sandbox_off_a_second_organisation_is_refused(
    sqlite_db: str, tmp_path: Path
) -> None:
    env = _env(sqlite_db, state_dir=str(tmp_path / "state"), sandbox="off")

    assert _bootstrap(env, "first").returncode == 0
    second = _bootstrap(env, "second")

    assert second.returncode == 1
    assert "TRAINPORT_SANDBOX=off" in second.stderr


def test_without_a_local_cluster_the_sandbox_does_not_limit_organisations(
    sqlite_db: str, tmp_path: Path
) -> None:
    env = _env(sqlite_db, state_dir=str(tmp_path / "state"), local_cluster="false")
    env["PATH"] = NO_BWRAP_PATH

    assert _bootstrap(env, "first").returncode == 0
    assert _bootstrap(env, "second").returncode == 0


@needs_bwrap
def test_with_the_sandbox_many_organisations_bootstrap(sqlite_db: str, tmp_path: Path) -> None:
    env = _env(sqlite_db, state_dir=str(tmp_path / "state"))

    assert _bootstrap(env, "first").returncode == 0
    assert _bootstrap(env, "second").returncode == 0


def test_readyz_says_whether_runs_are_sandboxed(sqlite_db: str, tmp_path: Path) -> None:
    off = Settings(database_url=sqlite_db, state_dir=tmp_path, sandbox=SandboxMode.OFF)
    with TestClient(create_app(off)) as client:
        body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["sandbox"].startswith("off")


@needs_bwrap
def test_readyz_names_bubblewrap_when_it_is_used(sqlite_db: str, tmp_path: Path) -> None:
    settings = Settings(database_url=sqlite_db, state_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["sandbox"].startswith("bwrap")


def test_a_worker_that_requires_bubblewrap_refuses_to_start_without_it(
    sqlite_db: str, tmp_path: Path
) -> None:
    env = _env(sqlite_db, state_dir=str(tmp_path / "state"), sandbox="bwrap")
    env["PATH"] = NO_BWRAP_PATH
    try:
        done = subprocess.run(
            [sys.executable, "-m", "workers.embedded", "--no-migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=20,
        )
    except subprocess.TimeoutExpired as still_running:
        raise AssertionError("the worker started without its required sandbox") from still_running
    assert done.returncode != 0
    assert "TRAINPORT_SANDBOX=bwrap" in done.stderr
    assert "bubblewrap" in done.stderr


def test_the_api_warns_at_start_when_runs_are_not_sandboxed(
    sqlite_db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=sqlite_db, state_dir=tmp_path, sandbox=SandboxMode.OFF)
    with caplog.at_level("WARNING"), TestClient(create_app(settings)):
        pass
    assert any("not sandboxed" in r.getMessage() for r in caplog.records)

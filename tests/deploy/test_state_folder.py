"""The embedded platform's state folder holds its database, and the admin commands find it
(issue 15): `trainport server --state-dir DIR` keeps the SQLite database in DIR, and
`python -m api.admin` resolves the database as the server does, says which one it opened, and
refuses a missing or unmigrated one with how to fix it: no traceback, no stray empty file.

Everything runs as a user runs it: subprocesses, in a folder of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core import migrate
from core.settings import Settings
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    pythonpath = os.pathsep.join([str(ROOT), str(ROOT / "sdk"), env.get("PYTHONPATH", "")])
    return {**env, "PYTHONPATH": pythonpath, **extra}


def admin(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.admin", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_a_database_url_the_database_lives_in_the_state_folder(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    assert settings.database_url == f"sqlite:///{tmp_path / 'state' / 'trainport.db'}"
    assert Settings(state_dir=tmp_path, database_url="sqlite:///x.db").database_url == (
        "sqlite:///x.db"
    )


@pytest.fixture
def served_state(tmp_path: Path) -> Iterator[Path]:
    """`trainport server --state-dir state` (API only), started from `tmp_path/cwd`."""
    cwd, state = tmp_path / "cwd", tmp_path / "state"
    cwd.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "trainport", "server", "--port", str(port), "--no-workers",
         "--state-dir", str(state)],
        cwd=cwd,
        env=_env(TRAINPORT_CONFIG=str(tmp_path / "config.toml")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert server.poll() is None, "the server exited"
        yield state
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_server_keeps_the_database_in_its_state_folder(served_state: Path) -> None:
    assert (served_state / "trainport.db").is_file()
    assert not (served_state.parent / "cwd" / ".trainport").exists()


def test_bootstrap_with_the_servers_state_dir_uses_its_database(served_state: Path) -> None:
    done = admin(served_state.parent / "cwd", "bootstrap", "--org", "acme", "--json",
                 "--state-dir", str(served_state))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["api_key"].startswith("tp_")
    assert f"database: sqlite:///{served_state / 'trainport.db'}" in done.stderr
    assert "--state-dir" in done.stderr  # and why that one


def test_bootstrap_also_follows_trainport_state_dir(served_state: Path, tmp_path: Path) -> None:
    done = admin(tmp_path, "bootstrap", "--org", "acme", TRAINPORT_STATE_DIR=str(served_state))
    assert done.returncode == 0, done.stderr
    assert "TRAINPORT_STATE_DIR" in done.stderr


def test_bootstrap_beside_another_state_folder_explains_and_creates_nothing(
    served_state: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = admin(elsewhere, "bootstrap", "--org", "acme")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    missing = elsewhere / ".trainport" / "trainport.db"
    assert f"there is no database file at {missing}" in done.stderr
    assert "--state-dir" in done.stderr
    assert "--migrate" in done.stderr
    assert not (elsewhere / ".trainport").exists()


def test_an_unmigrated_database_is_refused_with_the_fix_not_a_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    for command in (["bootstrap", "--org", "acme"], ["secrets-reencrypt"]):
        done = admin(tmp_path, *command, "--database-url", f"sqlite:///{empty}")
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert "no Trainport schema yet" in done.stderr
        assert "python -m api.admin migrate" in done.stderr


def test_bootstrap_with_migrate_creates_the_database_it_names(tmp_path: Path) -> None:
    done = admin(tmp_path, "bootstrap", "--org", "acme", "--migrate", "--state-dir", "state")
    assert done.returncode == 0, done.stderr
    assert migrate.schema_problem(f"sqlite:///{tmp_path / 'state' / 'trainport.db'}") is None

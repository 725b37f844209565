"""Bring your own code, end to end: the CLI ships a folder (or the run names a git repository),
the worker unpacks it into the attempt's folder, the command finds its relative files, and the
provenance record holds the snapshot digest (and the commit) as observed.

Real parts only: uvicorn (the API), `python -m workers.embedded` (Celery on Redis), the CLI as
a subprocess, the local object store shared by both, and a bare git repository on disk reached
through a file:// URL (the operator allows file:// here: TRAINPORT_GIT_ALLOW_FILE_URLS).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.app_state import app_engine
from core.settings import Settings
from tests.factories import Tenant, make_tenant
from tests.support.platforms import StartPlatform
from tests.support.servers import StartServer

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """\
import json, pathlib
config = json.loads(pathlib.Path("configs/tiny.json").read_text())
print("cwd", pathlib.Path.cwd().name, "lr", config["lr"])
"""


@dataclass(frozen=True)
class Live:
    url: str
    tenant: Tenant
    state: Path

    def get(self, path: str) -> Any:
        response = httpx.get(self.url + path, headers=self.tenant.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        version = 0
        while time.monotonic() < deadline:
            params = {"wait": 5, "resource_version": version}
            run: dict[str, Any] = httpx.get(
                f"{self.url}/v1/runs/{run_id}", params=params, headers=self.tenant.headers,
                timeout=30,
            ).json()  # fmt: skip
            if run["status"] in {"succeeded", "failed", "cancelled"}:
                return run
            version = run["resource_version"]
        raise AssertionError(f"run {run_id} did not finish in {timeout}s")

    def log(self, run_id: str) -> str:
        response = httpx.get(f"{self.url}/v1/runs/{run_id}/logs", headers=self.tenant.headers)
        return response.text


@pytest.fixture
def live(
    fresh_url: str, tmp_path: Path, start_platform: StartPlatform, start_server: StartServer
) -> Iterator[Live]:
    state = tmp_path / "state"
    shared = {"state_dir": str(state), "git_allow_file_urls": "true"}
    start_platform(fresh_url, **shared)
    server = start_server(fresh_url, **shared)
    app = create_app(Settings(database_url=fresh_url))
    with TestClient(app) as client:
        tenant = make_tenant(client)
    yield Live(server.url, tenant, state)
    app_engine(app).dispose()


def cli(live: Live, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env.update(TRAINPORT_API_URL=live.url, TRAINPORT_API_KEY=live.tenant.key)
    env["TRAINPORT_CONFIG"] = str(cwd / "no-config.toml")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "sdk")])
    command = [PY, "-m", "trainport", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def project(folder: Path) -> Path:
    """A small research-style project: a script that reads a file relative to itself."""
    (folder / "src" / "configs").mkdir(parents=True)
    (folder / "src" / "train.py").write_text(SCRIPT)
    (folder / "src" / "configs" / "tiny.json").write_text('{"lr": 0.003}')
    (folder / "src" / "run.sh").write_text(f"#!/bin/sh\nexec {PY} train.py\n")
    (folder / "src" / "run.sh").chmod(0o755)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "huge.bin").write_bytes(b"\0" * 4096)
    (folder / ".gitignore").write_text("checkpoints/\n")
    (folder / ".trainportignore").write_text("*.secret\n")
    (folder / "token.secret").write_text("never shipped")
    return folder


def test_the_cli_ships_a_workdir_and_the_script_finds_its_relative_files(
    live: Live, tmp_path: Path
) -> None:
    folder = project(tmp_path / "proj")
    (folder / "run.yaml").write_text("workdir: .\nworking_dir: src\ncommand: ['./run.sh']\n")
    submitted = cli(live, "run", "-f", "run.yaml", "-o", "json", cwd=folder)
    assert submitted.returncode == 0, submitted.stderr
    run = httpx.Response(200, content=submitted.stdout).json()
    digest = run["spec"]["workdir"]
    assert digest.startswith("sha256:")
    done = live.wait(run["id"])
    log = live.log(run["id"])
    assert done["status"] == "succeeded", log
    assert "cwd src lr 0.003" in log

    shipped = live.get(f"/v1/runs/{run['id']}/provenance")["record"]["code"]["shipped"]
    assert shipped["source"] == "observed"
    assert shipped["digest"] == digest
    snapshot = live.get(f"/v1/code/{digest}")
    assert snapshot["origin"] == "upload"

    again = cli(live, "run", "-f", "run.yaml", "-o", "json", cwd=folder)
    assert again.returncode == 0, again.stderr
    assert httpx.Response(200, content=again.stdout).json()["spec"]["workdir"] == digest


def test_a_git_source_is_resolved_fetched_and_recorded(live: Live, tmp_path: Path) -> None:
    bare = tmp_path / "repo.git"
    work = project(tmp_path / "clone")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "first"]):
        subprocess.run([*git, *args], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=work, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
    ).stdout.strip()
    spec = textwrap.dedent(f"""\
        git: {{url: "{bare.as_uri()}", ref: main}}
        working_dir: src
        command: ["{PY}", "train.py"]
        """)
    (tmp_path / "git-run.yaml").write_text(spec)
    submitted = cli(live, "run", "-f", "git-run.yaml", "-o", "json", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    run = httpx.Response(200, content=submitted.stdout).json()
    assert run["spec"]["git"]["commit"] == commit  # resolved by the API at submit
    done = live.wait(run["id"])
    assert done["status"] == "succeeded", live.log(run["id"])
    assert "cwd src lr 0.003" in live.log(run["id"])
    shipped = live.get(f"/v1/runs/{run['id']}/provenance")["record"]["code"]["shipped"]
    assert shipped["source"] == "observed"
    assert shipped["git"] == {"url": bare.as_uri(), "ref": "main", "commit": commit}
    assert live.get(f"/v1/code/{shipped['digest']}")["git_commit"] == commit

"""A third-party training script, unchanged, through the whole platform (issue 14).

`tests/fixtures/nanotrainer` is research code as people bring it (see its README). It trains
with launcher `none` (it would die on `RANK`), its `iter N: loss X` lines become the `loss`
series, a real SIGKILL of its process retries the run (`killed`, not `oom_killed`) and the
retry resumes from the `ckpt.pt` it wrote in TRAINPORT_CHECKPOINT_DIR, which the platform
registered as a checkpoint; its relative `out/` files are listed, downloadable and in the
run's provenance with their digests.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from tests.factories import Tenant, create_run, make_tenant
from tests.support.platforms import StartPlatform, wait_for_run

PY = sys.executable
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "nanotrainer"
# Stands in for a `workdir` code source (issue 14, code sources): the attempt's working folder
# gets the script's folder, then the script runs from there, as `python train.py ARGS` would.
UNPACK_AND_RUN = (
    "import runpy, shutil, sys; "
    f"shutil.copytree({str(FIXTURE)!r}, '.', dirs_exist_ok=True); "
    "sys.argv = ['train.py', *sys.argv[1:]]; "
    "runpy.run_path('train.py', run_name='__main__')"
)
LOSS_PATTERN = r"iter (?P<step>\d+): loss (?P<loss>[\d.]+)"


@pytest.fixture
def client(
    make_database: Callable[[], str], start_platform: StartPlatform, tmp_path: Path
) -> Iterator[TestClient]:
    """A platform and an API sharing one state folder: logs, outputs and checkpoints."""
    url, state = make_database(), tmp_path / "state"
    start_platform(url, state_dir=state, git_allow_file_urls="true")  # the git-source test's
    settings = Settings(
        database_url=url, state_dir=state, key_touch_interval_seconds=0, git_allow_file_urls=True
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as made:
        yield made


def _log(client: TestClient, tenant: Tenant, run_id: str, attempt: int) -> str:
    response = client.get(
        f"/v1/runs/{run_id}/logs", params={"attempt": attempt}, headers=tenant.headers
    )
    return response.text if response.status_code == 200 else ""


def _wait_for_line(
    client: TestClient, tenant: Tenant, run_id: str, needle: str, timeout: float = 90.0
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded poll of the stored log
        text = _log(client, tenant, run_id, 1)
        if needle in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never appeared:\n{_log(client, tenant, run_id, 1)}")


def test_research_code_trains_is_killed_resumes_and_keeps_its_outputs(
    client: TestClient,
) -> None:
    tenant = make_tenant(client)
    args = ["--max_iters=240", "--eval_interval=40", "--sleep_per_iter=0.02"]
    run = create_run(
        client,
        tenant,
        command=[PY, "-c", UNPACK_AND_RUN, *args],
        scheduling={"max_retries": 1},
        outputs=["out/**"],
        metrics={"from_logs": [{"pattern": LOSS_PATTERN}]},
    )
    assert run["spec"]["launcher"] == "none"

    text = _wait_for_line(client, tenant, run["id"], "saving checkpoint to")
    [pid] = re.findall(r"started pid (\d+)", text)
    os.kill(int(pid), signal.SIGKILL)  # the script's own process, as the OOM killer would not

    done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"}, timeout=180)
    assert done["status"] == "succeeded", done["status_message"]
    first, second = done["attempts"]
    assert first["reason"] == "killed", first
    assert second["outcome"] == "succeeded", second
    resumed = re.search(r"resuming from iter (\d+)", _log(client, tenant, run["id"], 2))
    assert resumed, _log(client, tenant, run["id"], 2)
    assert int(resumed.group(1)) >= 40

    series = client.get(
        f"/v1/runs/{run['id']}/metrics", params={"name": "loss"}, headers=tenant.headers
    ).json()["series"]["loss"]
    assert series["steps"][0] == 0
    assert max(series["steps"]) == 240
    assert all(0 < value < 10 for value in series["values"])

    checkpoints = client.get(f"/v1/runs/{run['id']}/checkpoints", headers=tenant.headers).json()
    assert checkpoints, "the ckpt.pt the script wrote was not registered"
    assert {f["path"] for f in checkpoints[0]["files"]} == {"ckpt.pt"}

    listing = client.get(f"/v1/runs/{run['id']}/outputs", headers=tenant.headers).json()
    final = {f["path"]: f for f in listing["data"] if f["attempt"] == 2}
    assert set(final) == {"out/final.pt", "out/samples.txt"}
    download = client.get(final["out/samples.txt"]["url"], headers=tenant.headers)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == final["out/samples.txt"]["sha256"]

    record = client.get(f"/v1/runs/{run['id']}/provenance", headers=tenant.headers).json()
    kept = {(o["attempt"], o["path"]): o for o in record["record"]["outputs"]}
    assert kept[(2, "out/final.pt")]["sha256"] == final["out/final.pt"]["sha256"]
    assert kept[(2, "out/final.pt")]["source"] == "observed"


def _pushed(fixture: Path, folder: Path) -> tuple[Path, str]:
    """The script's folder as a repository's `main`, in a bare repository; (it, the commit)."""
    work, bare = folder / "clone", folder / "nanotrainer.git"
    shutil.copytree(fixture, work)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "import"]):
        subprocess.run([*git, *args], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=work, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
    ).stdout.strip()
    return bare, commit


def test_research_code_from_a_git_source_trains_and_keeps_its_outputs_and_commit(
    client: TestClient, tmp_path: Path
) -> None:
    """The same script, fetched by the platform from a repository (a file:// bare one here):
    no stand-in, `python train.py` in the fetched code's root."""
    bare, commit = _pushed(FIXTURE, tmp_path)
    tenant = make_tenant(client)
    run = create_run(
        client,
        tenant,
        git={"url": bare.as_uri(), "ref": "main"},
        command=[PY, "train.py", "--max_iters=60", "--eval_interval=20"],
        outputs=["out/**"],
        metrics={"from_logs": [{"pattern": LOSS_PATTERN}]},
    )
    assert run["spec"]["git"]["commit"] == commit
    done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"}, timeout=180)
    assert done["status"] == "succeeded", _log(client, tenant, run["id"], 1)

    series = client.get(
        f"/v1/runs/{run['id']}/metrics", params={"name": "loss"}, headers=tenant.headers
    ).json()["series"]["loss"]
    assert max(series["steps"]) == 60
    listing = client.get(f"/v1/runs/{run['id']}/outputs", headers=tenant.headers).json()
    final = {f["path"]: f for f in listing["data"]}
    assert set(final) == {"out/final.pt", "out/samples.txt"}

    record = client.get(f"/v1/runs/{run['id']}/provenance", headers=tenant.headers).json()
    shipped = record["record"]["code"]["shipped"]
    assert shipped["source"] == "observed"
    assert shipped["git"]["commit"] == commit
    kept = {o["path"]: o for o in record["record"]["outputs"]}
    assert kept["out/final.pt"]["sha256"] == final["out/final.pt"]["sha256"]

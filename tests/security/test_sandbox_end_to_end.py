"""An org-B run, through the real API and worker of the embedded mode, reaches nothing else.

SQLite database and serverless broker in the state folder, as `trainport server` and the demo
run them, with the sandbox required (`TRAINPORT_SANDBOX=bwrap`). Org A has a dataset and a
live run with a checkpoint and files in its workdir; org B pushes its own dataset and submits
the probe (tests/security/sandbox_probe.py) pinned to it.

The runs call back to the same platform's API served by uvicorn (TRAINPORT_PUBLIC_URL), so the
probe also tries, with its own run token, what org A's run, dataset and storage answer, and on
its retry what its ended first attempt's token still opens. (A run naming a secret only org A
set fails to launch without A's value: tests/security/test_secrets_launch.py,
`test_a_run_naming_a_secret_only_another_org_set_fails_to_launch`, end to end.)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core import migrate
from core.logs import LogStore
from core.settings import Settings
from tests.factories import Tenant, create_run, make_tenant
from tests.security.sandbox_probe import (
    assert_contained,
    assert_reached_the_api,
    probe_command,
    probe_result,
    reached,
)
from tests.support.platforms import Platforms, wait_for_run
from tests.support.servers import ROOT, _wait_until_ready, free_port
from tests.support.training import create_dataset, upload

CANARY = "canary-secret-key-e2e-77c2"
ORG_A_RUN = (
    "import os, pathlib, time\n"
    "pathlib.Path('notes.txt').write_text('org A notes')\n"
    "pathlib.Path(os.environ['TRAINPORT_CHECKPOINT_DIR'], 'secret.bin').write_text('weights')\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[TestClient]:
    state, platforms = tmp_path / "state", Platforms(tmp_path)
    url = f"sqlite:///{state / 'trainport.db'}"
    state.mkdir()
    migrate.upgrade(url)
    settings = Settings(
        database_url=url, state_dir=state, secret_key=CANARY, key_touch_interval_seconds=0
    )
    try:
        with _served_api(settings, tmp_path / "uvicorn.log") as api_url:
            platforms.start(
                url,
                broker_url="",
                state_dir=state,
                secret_key=CANARY,
                sandbox="bwrap",
                public_url=api_url,
            )
            with TestClient(create_app(settings)) as client:
                yield client
    finally:
        platforms.stop_all()


@contextlib.contextmanager
def _served_api(settings: Settings, log: Path) -> Iterator[str]:
    """The platform's API over real HTTP (uvicorn, same database and keys): what runs call."""
    values = {
        "database_url": settings.database_url,
        "state_dir": str(settings.state_dir),
        "secret_key": CANARY,
        "broker_url": "",
        "key_touch_interval_seconds": "0",
        "log_level": "WARNING",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env |= {f"TRAINPORT_{k.upper()}": v for k, v in values.items()}
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1"]
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [*command, "--port", str(port)], cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, server, log)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _wait_for(path_glob: str, root: Path, timeout: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded poll: the run writes it from another process
        if found := sorted(root.glob(path_glob)):
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"nothing matched {path_glob} under {root}")


def _dataset_file(client: TestClient, tenant: Tenant, name: str, data: bytes) -> Path:
    create_dataset(client, tenant, name)
    _, version = upload(client, tenant, name, {"train.txt": data})
    return Path(urlsplit(version["uri"]).path) / "train.txt"


def test_an_org_b_run_reaches_nothing_of_the_platform_or_org_a(
    embedded: TestClient, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    org_a, org_b = make_tenant(embedded), make_tenant(embedded)
    a_data = _dataset_file(embedded, org_a, "a-text", b"org A data\n")
    a_run = create_run(
        embedded, org_a, command=[sys.executable, "-c", ORG_A_RUN], data={"datasets": ["a-text"]}
    )
    a_work = _wait_for(f"runs/{a_run['id']}/attempt-1/work/notes.txt", state)
    a_checkpoint = _wait_for(f"storage/orgs/*/runs/{a_run['id']}/checkpoints/secret.bin", state)
    b_data = _dataset_file(embedded, org_b, "b-text", b"org B data\n")
    targets = {
        "canaries": [CANARY],
        "database": str(state / "trainport.db"),
        "state_dir": str(state),
        "storage_dir": str(state / "storage"),
        "log_dir": str(state / "logs"),
        "foreign": {
            "org A's dataset": str(a_data),
            "org A's workdir": str(a_work),
            "org A's checkpoint": str(a_checkpoint),
            "org A's log": str(LogStore(state / "logs").ref(a_run["id"], 1, 0).path),
        },
    }

    targets["api"] = {
        "a_run": a_run["id"],
        "a_dataset": "a-text",
        "a_source": a_data.parent.as_uri() + "/",
        "own_dataset": "b-text",
        "fail_attempt": "1",  # its retry then tries the first attempt's token
    }

    b_run = create_run(
        embedded,
        org_b,
        command=probe_command(sys.executable, targets),
        data={"datasets": ["b-text"]},
        scheduling={"max_retries": 1},
    )
    done = wait_for_run(embedded, org_b, b_run["id"], {"succeeded", "failed"}, 60, wait=1)
    embedded.post(f"/v1/runs/{a_run['id']}/cancel", headers=org_a.headers)

    logs = [_log(embedded, org_b, b_run["id"], attempt) for attempt in (1, 2)]
    assert done["status"] == "succeeded", logs
    assert [a["outcome"] for a in done["attempts"]] == ["failed", "succeeded"], done["attempts"]
    first, second = probe_result(logs[0]), probe_result(logs[1])
    for found in (first, second):
        assert_reached_the_api(found)
        assert reached(found) == {}
        assert_contained(found)
    assert first["api"]["read org A's run"] == 404
    assert first["api"]["list runs"] == 401  # a run token may not list runs at all
    earlier = {k: v for k, v in second["api"].items() if k.startswith("earlier attempt's")}
    assert len(earlier) == 5
    assert set(earlier.values()) == {401}, earlier
    assert b_data.read_bytes() == b"org B data\n"
    assert sorted(p.name for p in b_data.parent.iterdir()) == ["train.txt"]
    datasets = embedded.get("/v1/datasets", headers=org_b.headers).json()["data"]
    # The probe made no dataset and registered no source: b-text still has its one version.
    assert [(d["name"], len(d["versions"])) for d in datasets] == [("b-text", 1)]


def _log(client: TestClient, tenant: Tenant, run_id: str, attempt: int) -> str:
    response = client.get(
        f"/v1/runs/{run_id}/logs", params={"attempt": attempt}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    return response.text

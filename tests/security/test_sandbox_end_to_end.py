"""An org-B run, through the real API and worker of the embedded mode, reaches nothing else.

SQLite database and serverless broker in the state folder, as `trainport server` and the demo
run them, with the sandbox required (`TRAINPORT_SANDBOX=bwrap`). Org A has a dataset and a
live run with a checkpoint and files in its workdir; org B pushes its own dataset and submits
the probe (tests/security/sandbox_probe.py) pinned to it.
"""

from __future__ import annotations

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
from tests.security.sandbox_probe import assert_contained, probe_command, probe_result, reached
from tests.training_api.conftest import create_dataset, upload
from tests.workers.conftest import Platforms, wait_for_run

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
        platforms.start(url, broker_url="", state_dir=state, secret_key=CANARY, sandbox="bwrap")
        with TestClient(create_app(settings)) as client:
            yield client
    finally:
        platforms.stop_all()


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

    b_run = create_run(
        embedded,
        org_b,
        command=probe_command(sys.executable, targets),
        data={"datasets": ["b-text"]},
    )
    done = wait_for_run(embedded, org_b, b_run["id"], {"succeeded", "failed"}, wait=1)
    embedded.post(f"/v1/runs/{a_run['id']}/cancel", headers=org_a.headers)

    log = embedded.get(f"/v1/runs/{b_run['id']}/logs", headers=org_b.headers).text
    assert done["status"] == "succeeded", log
    found = probe_result(log)
    assert reached(found) == {}
    assert_contained(found)
    assert b_data.read_bytes() == b"org B data\n"
    assert sorted(p.name for p in b_data.parent.iterdir()) == ["train.txt"]

"""The same training routes on the embedded SQLite database with the local object store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from tests.factories import make_tenant
from tests.support.checkpointing import commit_files
from tests.support.training import SECRET, create_dataset, start, submit, upload


@pytest.fixture(scope="module")
def embedded(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root: Path = tmp_path_factory.mktemp("embedded-training")
    settings = Settings(
        database_url=sqlite_url,
        key_touch_interval_seconds=0,
        state_dir=root,
        secret_key=SECRET,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_metrics_progress_checkpoints_and_datasets_work_on_sqlite(embedded: TestClient) -> None:
    tenant = make_tenant(embedded)
    create_dataset(embedded, tenant, "corpus")
    _, version = upload(embedded, tenant, "corpus", {"a.txt": b"a"})
    run = start(embedded, submit(embedded, tenant, data={"datasets": ["corpus@1"]}))
    assert run.datasets["corpus"]["digest"] == version["digest"]
    base = f"/v1/runs/{run.run_id}"
    points = [{"step": s, "values": {"loss": float(s % 17)}} for s in range(3000)]
    response = embedded.post(f"{base}/metrics", json={"points": points}, headers=run.headers)
    assert response.json() == {"accepted": 3000}
    series = embedded.get(f"{base}/metrics?max_points=100", headers=tenant.headers).json()
    steps = series["series"]["loss"]["steps"]
    assert len(steps) <= 100
    assert (steps[0], steps[-1]) == (0, 2999)
    beat = {"step": 10, "total_steps": 20}
    assert embedded.post(f"{base}/heartbeat", json=beat, headers=run.headers).status_code == 204
    body = commit_files(run.env["TRAINPORT_CHECKPOINT_URI"], 10, {"w.bin": b"w"})
    body["metrics"] = {"loss": float("nan"), "acc": 0.5}
    headers = {**run.headers, "Content-Type": "application/json"}
    posted = embedded.post(f"{base}/checkpoints", content=json.dumps(body), headers=headers)
    assert posted.status_code == 201, posted.text
    assert posted.json()["metrics"] == {"acc": 0.5}
    shown = embedded.get(base, headers=tenant.headers).json()
    assert shown["progress"] == {"step": 10, "total_steps": 20, "fraction": 0.5}
    assert shown["latest_metrics"] == {"loss": float(2999 % 17)}

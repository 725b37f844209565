"""The runtime keeps checkpoints and reads datasets on S3 through the API alone (issue 12): a
run's process, with no AWS_* variable and no boto3 importable, saves checkpoints (keep_last
deleting old ones), lists them, downloads and verifies one into an empty cache, and reads its
pinned dataset. moto's server is the S3 endpoint; the API runs under uvicorn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import make_tenant
from tests.security.storage_fixtures import BUCKET, live_storage_api, storage_api, storage_app
from tests.support.training import create_dataset, start, submit, upload
from trainport.runtime import Checkpoints
from trainport.runtime.api import RunAPI
from trainport.runtime.platform_store import PlatformStore

__all__ = ["live_storage_api", "storage_api", "storage_app"]  # fixtures used below

ROOT = Path(__file__).resolve().parents[2]
# A run's process: no boto3 (so no platform credential could be used even if present).
TRAIN = """
import json, sys
sys.modules["boto3"] = None
import torch
from trainport.runtime import init

run = init(keep_checkpoints=2, handle_sigterm=False)
for step in (1, 2, 3):
    run.checkpoints.save({"w": torch.arange(4) * step}, step=step)
corpus = run.datasets["corpus"].path
print(json.dumps({
    "steps": [c.step for c in run.checkpoints.list()],
    "corpus": sorted(p.name for p in corpus.iterdir()),
    "text": (corpus / "a.txt").read_text(),
}))
run.close()
"""
RESUME = """
import json, sys
sys.modules["boto3"] = None
from trainport.runtime import init

run = init(handle_sigterm=False)
print(json.dumps({"w": run.checkpoints.load()["w"].tolist()}))
run.close()
"""


def run_process(script: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def process_env(launch: dict[str, str], api_url: str, cache: Path) -> dict[str, str]:
    """The launch environment as an executor gives it, with nothing of the test's own."""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'sdk'}",
        "HOME": str(cache),
        **launch,
        "TRAINPORT_API_URL": api_url,
        "TRAINPORT_CACHE_DIR": str(cache),
    }
    assert [name for name in env if name.startswith("AWS_")] == []
    return env


def test_the_runtime_round_trips_a_checkpoint_through_the_api(
    storage_api: TestClient, live_storage_api: str, s3_endpoint: str, tmp_path: Path
) -> None:
    tenant = make_tenant(storage_api)
    create_dataset(storage_api, tenant, "corpus")
    upload(storage_api, tenant, "corpus", {"a.txt": b"alpha", "b.txt": b"beta"})
    run = start(storage_api, submit(storage_api, tenant, data={"datasets": ["corpus"]}))

    trained = run_process(TRAIN, process_env(run.env, live_storage_api, tmp_path / "first"))
    assert trained == {"steps": [2, 3], "corpus": ["a.txt", "b.txt"], "text": "alpha"}

    resumed = run_process(RESUME, process_env(run.env, live_storage_api, tmp_path / "second"))
    assert resumed == {"w": [0, 3, 6, 9]}

    prefix = f"platform/orgs/{tenant.org_id}/runs/{run.run_id}/checkpoints/"
    listed = make_bucket_client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    keys = sorted(o["Key"][len(prefix) :] for o in listed.get("Contents", []))
    assert keys == [
        "step-0000000002/COMMIT",
        "step-0000000002/state.pt",
        "step-0000000003/COMMIT",
        "step-0000000003/state.pt",
    ]
    registered = storage_api.get(f"/v1/runs/{run.run_id}/checkpoints", headers=run.headers)
    assert [c["step"] for c in registered.json()] == [3, 2]


def make_bucket_client(endpoint: str) -> Any:
    """The test's own view of the bucket (the platform's credentials, never the run's)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_a_file_above_the_threshold_goes_up_in_parts_and_verifies(
    storage_api: TestClient, live_storage_api: str, tmp_path: Path
) -> None:
    run = start(storage_api, submit(storage_api, make_tenant(storage_api)))
    api = RunAPI(live_storage_api, run.run_id, run.token)
    small_parts = {"multipart_threshold": 5 * 2**20, "part_bytes": 5 * 2**20}
    uri = run.env["TRAINPORT_CHECKPOINT_URI"]
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(11 * 2**20))  # three parts: 5, 5 and 1 MiB
    try:
        writer = Checkpoints(PlatformStore(uri, tmp_path / "a", api, **small_parts))
        writer.save_files({"weights.bin": weights}, step=7)
        reader = Checkpoints(PlatformStore(uri, tmp_path / "b", api, **small_parts))
        latest = reader.latest()
        assert latest is not None
        assert (latest.verify() / "weights.bin").read_bytes() == weights.read_bytes()
    finally:
        api.close()

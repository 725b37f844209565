"""Datasets are immutable in fact: stored read-only, mounted read-only, verified on read.

The sandbox's read-only mount is tested with the hostile probe (test_sandbox_executor.py);
here, the store's files themselves, and the runtime's verification where a run could still
have changed its copy (a later reader must notice, even if size and mtime were put back).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from tests.factories import make_tenant
from tests.support.training import create_dataset, upload
from trainport.runtime.datasets import Dataset, DatasetVerificationError
from trainport.runtime.digests import describe_files, tree_digest
from trainport.runtime.environment import DatasetRef

FILES = {"train.txt": b"org B data\n", "sub/more.txt": b"more\n"}


@pytest.fixture
def api(postgres_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=postgres_url, state_dir=tmp_path / "state", key_touch_interval_seconds=0
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_stored_dataset_version_is_read_only_on_disk(api: TestClient) -> None:
    tenant = make_tenant(api)
    create_dataset(api, tenant, "text")
    _, version = upload(api, tenant, "text", FILES)
    folder = Path(urlsplit(version["uri"]).path)

    stored = [folder / relative for relative in FILES]
    assert [oct(p.stat().st_mode & 0o777) for p in stored] == [oct(0o444)] * len(stored)
    if shutil.which("setpriv") and os.geteuid() == 0:  # root ignores modes; anyone else obeys
        appended = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
             f"echo tampered >> {stored[0]}"],
            capture_output=True, check=False,
        )  # fmt: skip
        assert appended.returncode != 0
    assert stored[0].read_bytes() == FILES["train.txt"]


def _dataset(root: Path) -> DatasetRef:
    for relative, content in FILES.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return DatasetRef("text", tree_digest(describe_files(root)), root.as_uri() + "/")


def test_a_dataset_changed_after_a_verified_read_fails_the_next_reader(tmp_path: Path) -> None:
    ref = _dataset(tmp_path / "data")
    cache = tmp_path / "cache"
    assert Dataset(ref, cache, None).path == tmp_path / "data"  # verified, and remembered
    target = tmp_path / "data" / "train.txt"
    before = target.stat()

    target.write_bytes(b"org X data\n")  # same size; then the old mtime put back
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))

    with pytest.raises(DatasetVerificationError):
        _ = Dataset(ref, cache, None).path


def test_the_store_never_follows_a_link_a_run_planted_out_of_its_folder(tmp_path: Path) -> None:
    """A sandboxed run cannot read org A's files, but it can leave a symbolic link to one in
    its checkpoint folder; the API, reading that folder as the platform, must not follow it."""
    from core.storage.base import ObjectNotFound
    from core.storage.local import LocalObjectStore

    root = tmp_path / "storage"
    secret = root / "orgs/org_a/datasets/dst_a/upl_a/train.txt"
    secret.parent.mkdir(parents=True)
    secret.write_text("org A data")
    checkpoints = LocalObjectStore(root).scoped("orgs/org_b/runs/run_b/checkpoints/")
    step = root / "orgs/org_b/runs/run_b/checkpoints/step-1"
    step.mkdir(parents=True)
    (step / "state.pt").symlink_to(secret)
    (step.parent / "step-2").symlink_to(secret.parent, target_is_directory=True)

    with pytest.raises(ObjectNotFound):
        checkpoints.read_bytes("step-1/state.pt")
    with pytest.raises(ObjectNotFound):
        list(checkpoints.iter_chunks("step-2/train.txt"))
    assert checkpoints.list("") == []

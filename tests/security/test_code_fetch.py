"""Code snapshots reach a run only as its own, unchanged: the init container's program
(core/code/fetch.py, run as `python3 -c`) fetches the run's snapshot through the API with the
run token (S3 on moto, presigned, no credential), and the unpacker refuses unsafe archives and
bytes that are not the digest's."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.code import fetch
from core.code.fetch import SnapshotRefused, unpack
from tests.factories import make_tenant
from tests.security.storage_fixtures import (
    PLATFORM_CREDENTIALS,
    live_storage_api,
    storage_api,
    storage_app,
)
from tests.support.training import start, submit

__all__ = ["live_storage_api", "storage_api", "storage_app"]


def archive(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def regular(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_the_init_program_fetches_the_runs_own_snapshot_with_its_token(
    storage_api: TestClient, live_storage_api: str, tmp_path: Path
) -> None:
    tenant = make_tenant(storage_api)
    data = archive(regular("src/train.py", b"print(1)\n"), regular("run.sh", b"#!/bin/sh\n", 0o755))
    digest = digest_of(data)
    put = storage_api.put(f"/v1/code/{digest}", content=data, headers=tenant.headers)
    assert put.status_code == 201, put.text
    run = start(storage_api, submit(storage_api, tenant, workdir=digest))
    env = {
        "PATH": os.environ["PATH"],
        "TRAINPORT_API_URL": live_storage_api,
        "TRAINPORT_RUN_ID": run.run_id,
        "TRAINPORT_RUN_TOKEN": run.token,
        "TRAINPORT_CODE_DIGEST": digest,
        "TRAINPORT_CODE_DIR": str(tmp_path / "code"),
    }
    program = Path(fetch.__file__).read_text()
    done = subprocess.run(
        [sys.executable, "-I", "-c", program], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "code" / "src" / "train.py").read_text() == "print(1)\n"
    assert os.access(tmp_path / "code" / "run.sh", os.X_OK)
    for value in PLATFORM_CREDENTIALS.values():  # the pod's whole world: nothing of the platform
        assert value not in done.stdout + done.stderr + str(env)


def test_a_run_token_reaches_only_its_own_snapshot_read_only(storage_api: TestClient) -> None:
    tenant = make_tenant(storage_api)
    own, other = archive(regular("a.py")), archive(regular("b.py"))
    for data in (own, other):
        storage_api.put(f"/v1/code/{digest_of(data)}", content=data, headers=tenant.headers)
    run = start(storage_api, submit(storage_api, tenant, workdir=digest_of(own)))

    def presign(method: str, key: str) -> int:
        body = {"operations": [{"method": method, "key": key}]}
        url = f"/v1/runs/{run.run_id}/storage/presign"
        return storage_api.post(url, json=body, headers=run.headers).status_code

    assert presign("GET", f"code/{digest_of(own)}") == 200
    assert presign("GET", f"code/{digest_of(other)}") == 403  # the org's, not this run's
    assert presign("PUT", f"code/{digest_of(own)}") == 403


@pytest.mark.parametrize(
    "members",
    [
        [regular("../escape.py")],
        [regular("/etc/evil")],
        [link("out", "../../etc")],
        [link("abs", "/etc/passwd")],
        [link("d", "."), regular("d/../../x")],
    ],
    ids=["dotdot", "absolute", "link-up", "link-absolute", "through-link"],
)
def test_an_unsafe_archive_is_refused_and_nothing_is_left(
    members: list[tuple[tarfile.TarInfo, bytes]], tmp_path: Path
) -> None:
    data = archive(*members)
    folder = tmp_path / "code"
    with pytest.raises(SnapshotRefused):
        unpack([data], digest_of(data), folder)
    assert list(folder.iterdir()) == []
    assert not (tmp_path / "escape.py").exists()


def test_bytes_that_are_not_the_digests_are_refused(tmp_path: Path) -> None:
    data = archive(regular("train.py", b"honest"))
    with pytest.raises(SnapshotRefused, match="hash to"):
        unpack([data], digest_of(archive(regular("train.py", b"other"))), tmp_path)
    assert list(tmp_path.iterdir()) == []

"""Checkpoints in S3 through boto3, against moto's server mode on 127.0.0.1 (real HTTP)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from trainport.runtime import Checkpoints
from trainport.runtime.stores import S3Store

moto_server = pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
boto3 = pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket="ckpt")
    yield client
    server.stop()


def s3_checkpoints(s3: Any, tmp_path: Path, prefix: str, keep_last: int = 3) -> Checkpoints:
    store = S3Store(f"s3://ckpt/{prefix}/", tmp_path / "cache", client=s3)
    return Checkpoints(store, keep_last=keep_last)


def test_a_state_round_trips_through_s3(s3: Any, tmp_path: Path) -> None:
    checkpoints = s3_checkpoints(s3, tmp_path, "round-trip")
    weights = torch.randn(256, 256)
    checkpoints.save({"w": weights}, step=10)
    assert torch.equal(checkpoints.load()["w"], weights)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="ckpt", Prefix="round-trip/")["Contents"]]
    assert sorted(keys) == [
        "round-trip/step-0000000010/COMMIT",
        "round-trip/step-0000000010/state.pt",
    ]


def test_an_upload_cut_before_its_commit_is_ignored(s3: Any, tmp_path: Path) -> None:
    checkpoints = s3_checkpoints(s3, tmp_path, "cut")
    checkpoints.save({"step": 10}, step=10)
    s3.put_object(Bucket="ckpt", Key="cut/step-0000000020/state.pt", Body=b"half an upload")
    latest = checkpoints.latest()
    assert latest is not None
    assert latest.step == 10
    assert checkpoints.load()["step"] == 10


def test_old_checkpoints_are_deleted_from_s3(s3: Any, tmp_path: Path) -> None:
    checkpoints = s3_checkpoints(s3, tmp_path, "keep", keep_last=2)
    for step in (1, 2, 3):
        checkpoints.save({"step": step}, step=step)
    assert [c.step for c in checkpoints.list()] == [2, 3]
    listed = s3.list_objects_v2(Bucket="ckpt", Prefix="keep/step-0000000001/")
    assert listed["KeyCount"] == 0

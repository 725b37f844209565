"""The ObjectStore interface against a real S3 endpoint (moto server) and the local filesystem."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from core.storage.backends import org_store
from core.storage.base import ObjectNotFound, ObjectStore
from core.storage.local import LocalObjectStore
from core.storage.s3 import S3ObjectStore
from tests.support.training import make_bucket, s3_settings

MIB = 2**20


@pytest.fixture(scope="module")
def s3_store(s3_endpoint: str) -> S3ObjectStore:
    make_bucket(s3_endpoint, "store-tests")
    settings = Settings(
        **s3_settings(
            s3_endpoint,
            "store-tests",
            s3_prefix="root",
            s3_multipart_threshold_bytes=5 * MIB,
            s3_multipart_chunk_bytes=5 * MIB,
        )
    )
    return S3ObjectStore.from_settings(settings)


@pytest.fixture(params=["s3", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "s3":
        scoped: ObjectStore = request.getfixturevalue("s3_store").scoped(f"t-{os.getpid()}/")
        scoped.delete_prefix("")
        return scoped
    return LocalObjectStore(tmp_path)


def test_put_read_list_and_delete(store: ObjectStore) -> None:
    store.put_bytes("a/one.txt", b"one")
    store.put_stream("a/b/two.bin", io.BytesIO(b"two" * 1000))
    assert store.read_bytes("a/one.txt") == b"one"
    assert b"".join(store.iter_chunks("a/b/two.bin")) == b"two" * 1000
    assert [(o.key, o.size) for o in store.list("a/")] == [("b/two.bin", 3000), ("one.txt", 3)]
    store.delete_prefix("a/b/")
    assert [o.key for o in store.list("a/")] == ["one.txt"]
    with pytest.raises(ObjectNotFound):
        store.read_bytes("a/b/two.bin")


def test_keys_cannot_escape_their_prefix(store: ObjectStore) -> None:
    for bad in ["../x", "a/../../x", "/abs", "a//b"]:
        with pytest.raises(Exception, match="not a valid storage path"):
            store.put_bytes(bad, b"x")


def test_a_large_stream_goes_up_in_several_parts(s3_store: S3ObjectStore) -> None:
    data = os.urandom(12 * MIB)
    s3_store.put_stream("big/blob", io.BytesIO(data))
    head = s3_store.client.head_object(Bucket="store-tests", Key="root/big/blob")
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MiB: a multipart upload
    assert b"".join(s3_store.iter_chunks("big/blob")) == data


def test_a_presigned_url_serves_the_object_without_credentials(s3_store: S3ObjectStore) -> None:
    s3_store.put_bytes("shared/file.txt", b"hello from s3")
    url = s3_store.presigned_url("shared/file.txt", 60)
    assert url is not None
    assert "X-Amz-Signature" in url
    assert httpx.get(url).content == b"hello from s3"
    tampered = url.replace("file.txt", "other.txt")
    assert httpx.get(tampered).status_code in {403, 404}


def test_each_org_has_its_own_prefix(tmp_path: Path) -> None:
    settings = Settings(storage_dir=tmp_path)
    first, second = org_store(settings, "org_a"), org_store(settings, "org_b")
    first.put_bytes("runs/x", b"a")
    assert second.list("") == []
    assert first.uri("runs/") == (tmp_path / "orgs/org_a/runs").resolve().as_uri() + "/"


def test_s3_uris_name_the_bucket_and_full_key(s3_store: S3ObjectStore) -> None:
    assert s3_store.scoped("orgs/o/").uri("runs/r/") == "s3://store-tests/root/orgs/o/runs/r/"

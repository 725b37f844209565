"""`run.datasets["name"].path`: pinned datasets as verified local folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.sdk.runtime.stand_ins import MakeRun, StubAPI
from trainport.runtime import DatasetVerificationError, Run
from trainport.runtime.digests import describe_files, tree_digest
from trainport.runtime.environment import DatasetRef

FILES = {"a.txt": b"hello\n", "sub/b.txt": b"world\n"}


def write_dataset(root: Path) -> str:
    for relative, content in FILES.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return tree_digest(describe_files(root))


def test_the_digest_is_sha256_over_sorted_path_and_file_digest_lines(tmp_path: Path) -> None:
    digest = write_dataset(tmp_path)
    lines = "".join(
        f"{path} {hashlib.sha256(content).hexdigest()}\n" for path, content in sorted(FILES.items())
    )
    assert digest == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def test_a_local_dataset_is_used_in_place_once_verified(tmp_path: Path, make_run: MakeRun) -> None:
    root = tmp_path / "data"
    digest = write_dataset(root)
    pinned = {"text": {"digest": digest, "uri": root.as_uri() + "/"}}
    run: Run = make_run(None, env={"datasets": _refs(pinned)})
    assert run.datasets["text"].path == root
    with pytest.raises(KeyError, match="pinned: text"):
        run.datasets["other"]


def test_a_local_dataset_that_changed_fails_verification(tmp_path: Path, make_run: MakeRun) -> None:
    root = tmp_path / "data"
    digest = write_dataset(root)
    (root / "a.txt").write_bytes(b"HELLO\n")
    run: Run = make_run(
        None, env={"datasets": _refs({"text": {"digest": digest, "uri": root.as_uri()}})}
    )
    with pytest.raises(DatasetVerificationError):
        _ = run.datasets["text"].path


def test_a_remote_dataset_is_downloaded_verified_and_cached(
    tmp_path: Path,
    stub_api: StubAPI,
    make_run: MakeRun,
) -> None:
    digest = write_dataset(tmp_path / "source")
    base = f"/v1/datasets/text/versions/{digest}"
    stub_api.documents[f"{base}/manifest"] = {
        "digest": digest,
        "files": [
            {
                "path": p,
                "size": len(c),
                "sha256": hashlib.sha256(c).hexdigest(),
                "url": f"{base}/files/{p}",
            }
            for p, c in FILES.items()
        ],
    }
    for relative, content in FILES.items():
        stub_api.files[f"{base}/files/{relative}"] = content
    pinned = _refs({"text": {"digest": digest, "uri": "s3://bucket/datasets/text/1/"}})
    run: Run = make_run(stub_api.url, env={"datasets": pinned})
    path = run.datasets["text"].path
    assert path == tmp_path / "cache" / "datasets" / digest.removeprefix("sha256:")
    assert (path / "sub" / "b.txt").read_bytes() == b"world\n"
    downloads = [r for r in stub_api.requests if "/files/" in r.path]
    assert len(downloads) == 2
    assert downloads[0].headers["Authorization"] == "Bearer tpr_test"
    again: Run = make_run(stub_api.url, env={"datasets": pinned})
    assert again.datasets["text"].path == path
    assert len([r for r in stub_api.requests if "/files/" in r.path]) == 2  # from the cache


def test_a_download_that_does_not_match_is_refused(
    tmp_path: Path,
    stub_api: StubAPI,
    make_run: MakeRun,
) -> None:
    digest = write_dataset(tmp_path / "source")
    base = f"/v1/datasets/text/versions/{digest}"
    stub_api.documents[f"{base}/manifest"] = {
        "digest": digest,
        "files": [
            {
                "path": p,
                "size": len(c),
                "sha256": hashlib.sha256(c).hexdigest(),
                "url": f"{base}/files/{p}",
            }
            for p, c in FILES.items()
        ],
    }
    stub_api.files[f"{base}/files/a.txt"] = b"tampered"
    stub_api.files[f"{base}/files/sub/b.txt"] = FILES["sub/b.txt"]
    pinned = _refs({"text": {"digest": digest, "uri": "s3://bucket/x/"}})
    run: Run = make_run(stub_api.url, env={"datasets": pinned})
    with pytest.raises(DatasetVerificationError):
        _ = run.datasets["text"].path
    assert not (tmp_path / "cache" / "datasets" / digest.removeprefix("sha256:")).exists()


def _refs(document: dict[str, dict[str, str]]) -> dict[str, DatasetRef]:
    return {
        name: DatasetRef(name, entry["digest"], entry["uri"]) for name, entry in document.items()
    }

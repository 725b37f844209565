"""Packing a workdir: what goes in, a deterministic archive, and the size limit's message."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from trainport.workdir import WorkdirTooLarge, pack


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def names(folder: Path) -> list[str]:
    return [entry.path for entry in pack(folder).entries]


def test_gitignore_trainportignore_and_git_are_left_out(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "train.py": "x",
            ".gitignore": "out/\n*.log\n!keep.log\n",
            ".trainportignore": "data/raw/\n",
            "out/ckpt.pt": "big",
            "run.log": "noise",
            "keep.log": "kept",
            "data/raw/a.bin": "raw",
            "data/small.txt": "small",
            "sub/.gitignore": "local.txt\n",
            "sub/local.txt": "ignored below sub only",
            "local.txt": "kept at the top",
            ".git/HEAD": "ref",
        },
    )
    assert names(tmp_path) == [
        ".gitignore",
        ".trainportignore",
        "data/small.txt",
        "keep.log",
        "local.txt",
        "sub/.gitignore",
        "train.py",
    ]


def test_the_same_files_pack_to_the_same_digest(tmp_path: Path) -> None:
    first = tree(tmp_path / "a", {"x.py": "1", "d/y.py": "2"})
    second = tree(tmp_path / "b", {"d/y.py": "2", "x.py": "1"})
    assert pack(first).digest == pack(second).digest
    (second / "x.py").write_text("changed")
    assert pack(first).digest != pack(second).digest


def test_the_archive_unpacks_with_modes_and_nothing_else(tmp_path: Path) -> None:
    folder = tree(tmp_path, {"run.sh": "#!/bin/sh\n", "lib/m.py": "pass"})
    (folder / "run.sh").chmod(0o750)
    packed = pack(folder)
    data = b"".join(packed.chunks())
    assert len(data) == packed.size
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert set(members) == {"lib/m.py", "run.sh"}
    assert members["run.sh"].mode == 0o755
    assert members["lib/m.py"].mode == 0o644
    assert {m.uid for m in members.values()} == {0}
    assert {m.mtime for m in members.values()} == {0}


def test_a_folder_over_the_limit_names_its_largest_files(tmp_path: Path) -> None:
    tree(tmp_path, {"model.bin": "x" * 5000, "train.py": "x"})
    with pytest.raises(WorkdirTooLarge) as refused:
        pack(tmp_path, max_bytes=1024)
    assert "model.bin" in str(refused.value)
    assert ".trainportignore" in str(refused.value)

"""What re-hashing a checkpoint's stored files at registration costs (issue 12, provenance).

`core.checkpoints.service.hash_stored_files` reads every file back from the local object store
and hashes it, on the registration request, up to TRAINPORT_CHECKPOINT_HASH_MAX_BYTES. This
prints seconds and MB/s per checkpoint size (median of --rounds), so the budget can be chosen
from the request time an operator accepts.

    .venv/bin/python -m bench.checkpoint_hash_bench --sizes-mb 16,128,512 --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from core.checkpoints.schemas import CheckpointIn
from core.checkpoints.service import hash_stored_files, location
from core.models import Run
from core.settings import Settings


def _checkpoint(settings: Settings, run: Run, size: int) -> CheckpointIn:
    folder = location(settings, run.org_id, run.id)
    data = os.urandom(size)
    folder.put_bytes("step-0000000001/model.bin", data)
    files = [{"path": "model.bin", "size": size, "sha256": hashlib.sha256(data).hexdigest()}]
    return CheckpointIn.model_validate({"step": 1, "path": "step-0000000001/", "files": files})


def measure(size_mb: int, rounds: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as root:
        settings = Settings(state_dir=Path(root), storage_dir=Path(root) / "storage")
        run = Run(id="run_bench", org_id="org_bench")
        body = _checkpoint(settings, run, size_mb * 2**20)
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            assert hash_stored_files(settings, run, body) == {"model.bin"}
            times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return seconds, size_mb / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes-mb", default="16,128,512")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'size MB':>8} {'seconds':>8} {'MB/s':>8}")
    for size in (int(s) for s in args.sizes_mb.split(",")):
        seconds, rate = measure(size, args.rounds)
        print(f"{size:>8} {seconds:>8.3f} {rate:>8.0f}")


if __name__ == "__main__":
    main()

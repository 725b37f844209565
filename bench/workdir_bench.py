"""Workdir upload (issue 14): how fast a 200 MB folder reaches the org's store, against a plain
`cp -r` of the same files, and what re-submitting unchanged content costs.

    .venv/bin/python -m bench.workdir_bench                 # 200 MB, local store, 3 rounds
    .venv/bin/python -m bench.workdir_bench --mb 50 --rounds 1

The folder is research-shaped: 2,000 source files of 4-16 KB (about 20 MB) and 6 binary files
(random bytes, so nothing compresses) for the rest. The API is `uvicorn api.main:app` (one
worker) on a fresh `trainport_bench_workdir` database, objects on local disk beside the cp
target, so both write to the same filesystem. Each round: `cp -r` into a fresh folder, then
`client.code.upload` of the same folder after its content changed by one byte (so the upload
really sends), then the same upload again (unchanged: one HEAD after hashing). Page cache warm
for all three: the first read of each round is not timed.

Targets: upload throughput at least 0.5 of cp's; an unchanged re-upload within 1 s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trainport
from bench.seed import database_url, recreate_database
from bench.servers import serve
from core import migrate
from core.db import build_engine, make_sessionmaker, session_scope
from core.settings import Settings
from core.tenants.service import bootstrap

DB = "trainport_bench_workdir"


def make_folder(root: Path, megabytes: int) -> int:
    rng = random.Random(14)
    total = 0
    for index in range(2000):
        path = root / f"pkg{index % 40}" / f"module_{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (f"def f_{index}(x):\n    return x * {index}\n" * rng.randint(150, 600)).encode()
        path.write_bytes(text)
        total += len(text)
    remaining = megabytes * 2**20 - total
    for index in range(6):
        data = os.urandom(remaining // 6)
        (root / "weights").mkdir(exist_ok=True)
        (root / "weights" / f"part-{index}.bin").write_bytes(data)
        total += len(data)
    return total


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def api_key(url: str) -> str:
    engine = build_engine(Settings(database_url=url))
    with session_scope(make_sessionmaker(engine)) as session:
        key = bootstrap(session, "bench").secret
    engine.dispose()
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    recreate_database(DB)
    url = database_url(DB)
    migrate.upgrade(url)
    key = api_key(url)
    with tempfile.TemporaryDirectory(prefix="workdir-bench-") as scratch:
        root = Path(scratch)
        size = make_folder(root / "project", args.mb)
        env = {
            "TRAINPORT_DATABASE_URL": url,
            "TRAINPORT_STATE_DIR": str(root / "state"),
            "TRAINPORT_MAX_CODE_SNAPSHOT_BYTES": str(4 * 2**30),
            "TRAINPORT_LOG_LEVEL": "WARNING",
        }
        with serve("api.main:app", "/readyz", env, root / "api.log") as served:
            client = trainport.Client(base_url=f"http://127.0.0.1:{served.port}", api_key=key)
            rounds = [one_round(client, root, round_) for round_ in range(args.rounds)]
            client.close()
    report(size, rounds)


def one_round(client: trainport.Client, root: Path, round_: int) -> tuple[float, float, float]:
    folder = root / "project"
    (folder / "round.txt").write_text(str(round_))  # new content: this upload must send
    subprocess.run(["cat", *map(str, folder.rglob("*.bin"))], stdout=subprocess.DEVNULL, check=True)
    target = root / f"copy-{round_}"
    cp = timed(lambda: subprocess.run(["cp", "-r", str(folder), str(target)], check=True))
    shutil.rmtree(target)
    sent: list[bool] = []
    upload = timed(lambda: sent.append(client.code.upload(folder).uploaded))
    again = timed(lambda: sent.append(client.code.upload(folder).uploaded))
    assert sent == [True, False], sent
    return cp, upload, again


def report(size: int, rounds: list[tuple[float, float, float]]) -> None:
    cp, upload, again = (statistics.median(r[i] for r in rounds) for i in range(3))
    mb = size / 2**20
    print(f"workdir: {mb:.0f} MiB in 2006 files; median of {len(rounds)} rounds")
    print(f"  cp -r                  {cp:6.2f} s  {mb / cp:8.0f} MiB/s")
    print(f"  upload (new content)   {upload:6.2f} s  {mb / upload:8.0f} MiB/s")
    print(f"  throughput vs cp       {cp / upload:6.2f}   (target >= 0.5)")
    print(f"  re-upload, unchanged   {again:6.2f} s           (target <= 1 s)")


if __name__ == "__main__":
    main()

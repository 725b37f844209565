"""TensorBoard import throughput: scalar points per second on one core (issue 14).

Writes `--points` scalars with a real writer (torch.utils.tensorboard, one tag per event as
`add_scalar` writes them) into a temporary folder, then reads the event file's bytes the way
the workers do for `metrics.tensorboard_dir` (`core.metrics.tensorboard.records` with both
CRC checks, then `scalars` per record) and prints points/s, median of rounds. Storing the
points (one INSERT batch per pass) is not included: it is the same path as every metric.

    .venv/bin/python -m bench.tensorboard_bench [--points 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from core.metrics.tensorboard import records, scalars


def event_bytes(points: int) -> bytes:
    from torch.utils.tensorboard import SummaryWriter

    with tempfile.TemporaryDirectory() as folder:
        writer = SummaryWriter(folder)
        for step in range(points):
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        writer.close()
        [events] = Path(folder).glob("events.out.tfevents.*")
        return events.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = event_bytes(args.points)
    rates = []
    for _ in range(args.rounds):
        began = time.thread_time()
        found = [point for record in records(data).data for point in scalars(record)]
        rates.append(len(found) / (time.thread_time() - began))
    print(f"{len(data):,} bytes, {args.points:,} scalars: {statistics.median(rates):,.0f} points/s")


if __name__ == "__main__":
    main()

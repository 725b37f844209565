"""Log-to-metrics parsing throughput: stored log lines per second on one core (issue 14).

Parses a block of stored log lines (`<time> stdout <text>`, core/logs.py) with
`core.metrics.from_logs.parse_stored`, the function the workers run on each rank's log, and
prints lines/s for: every line matching a simple pattern (the nanoGPT `iter N: loss X` line),
one line in ten matching (a chatty script), two patterns, and, for scale, Python's `re` doing
the same per-line search with no time bound (what RE2 buys safety against).

    .venv/bin/python -m bench.log_metrics_bench [--lines 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from core.logs import timestamp
from core.metrics.from_logs import compile_pattern, parse_stored

LOSS = r"iter (?P<step>\d+): loss (?P<loss>[\d.]+)"
LR = r"step (?P<step>\d+) lr (?P<lr>\S+)"


def block(lines: int, every: int) -> bytes:
    stamp = timestamp()
    rows = []
    for i in range(lines):
        text = (
            f"iter {i}: loss {2.5 - i * 1e-6:.4f}, time 12.31ms, mfu 41.20%"
            if i % every == 0
            else f"data loader worker {i % 8}: prefetched batch of 64 sequences in 3.1ms"
        )
        rows.append(f"{stamp} stdout {text}\n")
    return "".join(rows).encode()


def rate(fn: object, data: bytes, lines: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn(data)  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return lines / statistics.median(times)


def python_re(data: bytes) -> int:
    pattern = re.compile(LOSS.encode())
    found = 0
    for line in data.splitlines():
        if match := pattern.search(line.split(b" ", 2)[2]):
            found += 1
            float(match.group("loss"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    loss, lr = compile_pattern(LOSS), compile_pattern(LR)
    every_line, one_in_ten = block(args.lines, 1), block(args.lines, 10)
    cases = [
        ("simple pattern, every line matches", lambda d: parse_stored([loss], d), every_line),
        ("simple pattern, 1 line in 10 matches", lambda d: parse_stored([loss], d), one_in_ten),
        ("two patterns, every line matches one", lambda d: parse_stored([loss, lr], d), every_line),
        ("Python re, no time bound (for scale)", python_re, every_line),
    ]
    print(f"{args.lines} stored lines, median of {args.rounds} rounds, one core")
    for name, fn, data in cases:
        print(f"  {name:40s} {rate(fn, data, args.lines, args.rounds):>12,.0f} lines/s")


if __name__ == "__main__":
    main()

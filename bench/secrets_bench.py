"""What secrets cost: redacting log lines (LogWriter) and resolving a launch's secrets.

    PYTHONPATH=.:sdk python bench/secrets_bench.py [--lines 200000]

Prints the time per stored log line with 0, 3 and 20 secret values to redact, and the time to
encrypt and decrypt one value (a launch decrypts one per secret it names).
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

from core.logs import LogStore
from core.secrets.encryption import cipher_for
from core.settings import Settings

LINE = "step 1200 loss 2.3412 lr 3e-4 tokens/s 48211 grad_norm 0.91 " * 2


def _per_line_us(lines: int, values: list[str]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        writer = LogStore(Path(folder)).writer("run_bench", 1, 0, redact=values)
        started = time.perf_counter()
        for _ in range(lines):
            writer.write("stdout", LINE)
        elapsed = time.perf_counter() - started
        writer.close()
    return elapsed / lines * 1e6


def _cipher_us(rounds: int) -> tuple[float, float]:
    cipher = cipher_for(Settings(secrets_key=secrets.token_urlsafe(32)))
    value = secrets.token_urlsafe(40)
    started = time.perf_counter()
    tokens = [cipher.encrypt("org_x", "", "wandb", value) for _ in range(rounds)]
    encrypt = (time.perf_counter() - started) / rounds * 1e6
    started = time.perf_counter()
    for token in tokens:
        cipher.decrypt("org_x", "", "wandb", token)
    return encrypt, (time.perf_counter() - started) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    for count in (0, 3, 20):
        values = [secrets.token_urlsafe(32) for _ in range(count)]
        print(f"log line, {count:>2} secrets to redact: {_per_line_us(args.lines, values):6.2f} µs")
    encrypt, decrypt = _cipher_us(5_000)
    print(f"encrypt one value: {encrypt:6.1f} µs; decrypt one value: {decrypt:6.1f} µs")


if __name__ == "__main__":
    main()

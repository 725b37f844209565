"""What the local executor's sandbox adds to starting a rank: launch → the command running.

    .venv/bin/python -m bench.sandbox_bench              # 40 launches each way, interleaved
    .venv/bin/python -m bench.sandbox_bench --launches 100

Two `LocalExecutor`s over fresh state folders, one built as the worker builds it
(`rank_sandbox(settings)`: bubblewrap, as root a per-run uid) and one without a sandbox. Each
launch runs `python -S -c "print(time.time())"`: the printed time is the moment the user's
command runs, inside the sandbox or not, so the measured span is `launch()` (plan, folders,
chown, shim start) + the shim + bwrap and setpriv where used + the interpreter's start. Launches
alternate between the two executors so both see the same machine load. Prints p50/p95/max of
each and the difference of the medians (issue 12's target: the sandbox adds ≤ 50 ms p50).
Numbers only; nothing here asserts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from core.logs import LogStore
from core.settings import Settings
from workers.executors.base import LaunchRequest
from workers.executors.local import LocalExecutor
from workers.executors.local_sandbox import rank_sandbox

COMMAND = [sys.executable, "-S", "-c", "import time; print(time.time(), flush=True)"]
WAIT_SECONDS = 30.0


def _executor(root: Path, sandboxed: bool) -> LocalExecutor:
    settings = Settings(state_dir=root / "state", database_url=f"sqlite:///{root}/unused.db")
    sandbox = rank_sandbox(settings) if sandboxed else None
    if sandboxed and sandbox is None:
        raise SystemExit("this machine cannot sandbox (see /readyz): nothing to compare")
    return LocalExecutor(settings.state_dir, LogStore(settings.log_root), "http://x", 1.0, sandbox)


def _one(executor: LocalExecutor, number: int) -> float:
    """Seconds from launch() to the command's own clock reading."""
    request = LaunchRequest(f"run_bench{number:06d}", "org_bench", 1, {"command": COMMAND})
    log = executor.log_store.ref(request.run_id, 1, 0).path
    started = time.time()
    executor.launch(request)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:  # bounded poll: the shim writes the log from afar
        for line in log.read_text().splitlines() if log.exists() else []:
            _, _, printed = line.partition(" stdout ")
            if printed:
                executor.cleanup(request.run_id, 1)
                return float(printed) - started
        time.sleep(0.002)
    raise SystemExit(f"launch {number} never printed; its log:\n{log.read_text()}")


def _summary(name: str, spans: list[float]) -> float:
    ordered = sorted(spans)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000
    print(f"{name:<12} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1] * 1000:7.1f} ms")
    return p50


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_bench", description=__doc__)
    parser.add_argument("--launches", type=int, default=40, help="launches of each kind")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        plain = _executor(Path(folder) / "plain", sandboxed=False)
        boxed = _executor(Path(folder) / "boxed", sandboxed=True)
        spans: dict[str, list[float]] = {"unsandboxed": [], "sandboxed": []}
        _one(plain, 0), _one(boxed, 0)  # warm caches (page cache, bwrap's first exec)
        for number in range(1, args.launches + 1):
            spans["unsandboxed"].append(_one(plain, number))
            spans["sandboxed"].append(_one(boxed, number))
    print(f"launch → command running, {args.launches} launches each (interleaved)")
    base = _summary("unsandboxed", spans["unsandboxed"])
    boxed_p50 = _summary("sandboxed", spans["sandboxed"])
    print(f"the sandbox adds {boxed_p50 - base:+.1f} ms at p50 (target: ≤ 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
